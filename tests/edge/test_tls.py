"""MQTT over TLS against a real Mosquitto: the edge agent delivers and is acknowledged through
a collector that also connects over TLS; a client that does not hold the installation's CA, one
that expects another name, and one speaking plaintext to the TLS port are all refused."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import tls
from edge.config import load_settings
from edge.forward.mqtt import tls_context
from tests.edge.agent_process import spool_snapshot, start_agent, stored_readings
from tests.support.broker import MosquittoBroker
from tests.support.net import wait_for
from tests.support.processes import start_collector

# An MQTT 3.1.1 CONNECT with client id "x" and clean session.
_CONNECT = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 1]) + b"x"


@pytest.fixture
def tls_files(tmp_path: Path) -> tls.TlsFiles:
    return tls.init(tmp_path / "tls", ["localhost", "127.0.0.1"])


@pytest.fixture
def tls_broker(tmp_path: Path, tls_files: tls.TlsFiles) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path / "mosquitto", tls=tls_files).start()
    yield b
    b.stop()


def _handshake(ctx: ssl.SSLContext, port: int, host: str = "127.0.0.1") -> None:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(_CONNECT)
        assert s.recv(4)[:1] == b"\x20"  # CONNACK


def test_edge_agent_delivers_over_tls_and_is_acknowledged(
    tls_broker: MosquittoBroker, tls_files: tls.TlsFiles, fresh_database_url: str, tmp_path: Path
) -> None:
    collector = start_collector(
        fresh_database_url,
        tls_broker.tls_port,
        mqtt_host="localhost",
        mqtt_tls_ca_file=tls_files.ca_cert,
    )
    spool = tmp_path / "spool.db"
    agent = start_agent(
        spool,
        tls_broker.tls_port,
        simulate=1,
        sample_period_s=0.2,
        mqtt_tls=True,
        mqtt_ca_file=str(tls_files.ca_cert),
        shutdown_drain_s=20,
    )
    try:
        wait_for(lambda: len(stored_readings(fresh_database_url)) >= 5, 30, what="rows over TLS")
        agent.stop(timeout_s=30)
        final = spool_snapshot(spool)
        # Everything sent was acknowledged by the collector, so the spool let go of it.
        assert final["rows"] == [] and final["batches"] == 0, agent.log()[-2000:]
        assert len(stored_readings(fresh_database_url)) == final["ever_added"]
    finally:
        agent.kill()
        collector.stop()


def test_the_provisioned_ca_verifies_the_broker(
    tls_broker: MosquittoBroker, tls_files: tls.TlsFiles
) -> None:
    # As the bundle carries it: PEM text, not a file.
    settings = load_settings(
        None, None, device_id="gw-tls", mqtt_tls=True, mqtt_ca=tls_files.ca_cert.read_text()
    )
    _handshake(tls_context(settings), tls_broker.tls_port)


def test_a_client_without_the_ca_fails_verification(
    tls_broker: MosquittoBroker, tmp_path: Path
) -> None:
    # The system's trust store does not know the installation's CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ssl.create_default_context(), tls_broker.tls_port)
    # Nor does another installation's CA vouch for this broker.
    other = tls.init(tmp_path / "other", ["127.0.0.1"])
    settings = load_settings(
        None, None, device_id="gw-tls", mqtt_tls=True, mqtt_ca_file=other.ca_cert
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_context(settings), tls_broker.tls_port)


def test_a_certificate_for_another_name_fails_verification(tmp_path: Path) -> None:
    files = tls.init(tmp_path / "tls", ["broker.example"])
    broker = MosquittoBroker(tmp_path / "mosquitto", tls=files).start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            _handshake(tls.client_context(files.ca_cert), broker.tls_port)
    finally:
        broker.stop()


def test_plaintext_to_the_tls_port_gets_no_connack(tls_broker: MosquittoBroker) -> None:
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as s:
        s.sendall(_CONNECT)
        try:
            answer = s.recv(4)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20")
