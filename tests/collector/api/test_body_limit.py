"""Request bodies are limited while they are read: a huge body to any route costs the collector
about one chunk of memory, not the body, and a refused ingest batch is still recorded."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared import protocol as p
from tests.collector.conftest import query
from tests.support.broker import MosquittoBroker
from tests.support.processes import CollectorProcess, start_collector

HUGE = 64 * 1024 * 1024
CHUNK = 1024 * 1024


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.support.database import create_database, drop_database

    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def collector(database: str, broker: MosquittoBroker) -> Iterator[CollectorProcess]:
    proc = start_collector(database, broker.port, name="body-limit")
    yield proc
    proc.stop()


def _peak_rss_bytes(proc: CollectorProcess) -> int:
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _post_raw(port: int, path: str, headers: dict[str, str], body_chunks: Iterator[bytes]) -> int:
    """POST over a plain socket, sending chunks until the server stops reading; the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending: expected
        data = b""
        try:
            while b"\r\n" not in data:
                more = sock.recv(4096)
                if not more:
                    break
                data += more
        except (ConnectionResetError, TimeoutError):
            pass
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split()[1])


def _chunked(total: int) -> Iterator[bytes]:
    block = b"{" * CHUNK
    for _ in range(total // CHUNK):
        yield f"{CHUNK:x}\r\n".encode() + block + b"\r\n"
    yield b"0\r\n\r\n"


def _plain(total: int) -> Iterator[bytes]:
    block = b"{" * CHUNK
    for _ in range(total // CHUNK):
        yield block


@pytest.mark.parametrize("path", ["/api/v1/auth/login", p.HTTP_INGEST_PATH, "/api/v1/devices"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_huge_body_is_refused_with_413_without_being_held(
    collector: CollectorProcess, path: str, framing: str
) -> None:
    before = _peak_rss_bytes(collector)
    if framing == "chunked":
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        status = _post_raw(collector.http_port, path, headers, _chunked(HUGE))
    else:
        headers = {"Content-Type": "application/json", "Content-Length": str(HUGE)}
        status = _post_raw(collector.http_port, path, headers, _plain(HUGE))
    assert status == 413
    # Had the body been read whole, the peak would have grown by at least its 64 MiB.
    assert _peak_rss_bytes(collector) - before < 16 * 1024 * 1024
    assert httpx.get(collector.url + "/readyz").status_code == 200


def test_a_refused_oversize_ingest_batch_is_recorded(
    collector: CollectorProcess, database: str
) -> None:
    body = b'{"v":1,"dev":"big-one",' + b" " * (p.MAX_PAYLOAD_BYTES + 10) + b"}"
    resp = httpx.post(collector.url + p.HTTP_INGEST_PATH, content=body)
    assert resp.status_code == 413
    rows = query(
        database,
        "SELECT reason FROM ingest_rejects WHERE reason = 'oversize' AND transport = 'http'",
    )
    assert rows, "the refused batch left no reject row"


def test_an_invalid_content_length_is_a_400(collector: CollectorProcess) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": "9" * 40}
    assert _post_raw(collector.http_port, "/api/v1/auth/login", headers, iter([b"{}"])) == 400


def test_ordinary_requests_still_pass(collector: CollectorProcess) -> None:
    resp = httpx.post(
        collector.url + "/api/v1/auth/login", json={"username": "nobody", "password": "x" * 20}
    )
    assert resp.status_code == 401
