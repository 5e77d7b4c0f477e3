"""The board's CoAP client against a real aiocoap server: a confirmable POST with Content-Format
50 on the protocol path, the ack JSON back in a 2.04, and RFC 7252 retransmission when datagrams
are lost (a relay in front of the server drops them)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import aiocoap
import aiocoap.resource as resource
import pytest

from shared import protocol
from tests.firmware.mp import json_lines, run_on_board
from tests.support.net import free_port

# What the server saw of each request: path, Content-Format, payload, query.
Seen = list[tuple[tuple[str, ...], int | None, bytes, tuple[str, ...]]]


class Readings(resource.Resource, resource.PathCapable):
    def __init__(self, seen: Seen) -> None:
        super().__init__()
        self.seen = seen

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        opt = request.opt
        self.seen.append((opt.uri_path, opt.content_format, request.payload, opt.uri_query))
        return aiocoap.Message(
            code=aiocoap.CHANGED, payload=protocol.encode_ack(7, "b00t", 3, 0, 0)
        )


class CoapServer:
    """aiocoap in a thread of its own, on a free UDP port."""

    def __init__(self) -> None:
        self.port = free_port(socket.SOCK_DGRAM)
        self.seen: Seen = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        site = resource.Site()
        site.add_resource(("tw", "v1"), Readings(self.seen))
        self.context = self.loop.run_until_complete(
            aiocoap.Context.create_server_context(site, bind=("127.0.0.1", self.port))
        )
        self.ready.set()
        self.loop.run_forever()

    def start(self) -> CoapServer:
        self.thread.start()
        self.ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.context.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class LossyRelay:
    """Forwards datagrams to the server but drops the first ``drop`` requests from the board."""

    def __init__(self, server_port: int, drop: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = ("127.0.0.1", server_port)
        self.drop = drop
        self.received = 0
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client = None
        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        upstream.settimeout(0.05)
        while self.running:
            try:
                data, client = self.sock.recvfrom(2048)
                self.received += 1
                if self.received > self.drop:
                    upstream.sendto(data, self.server)
            except TimeoutError:
                pass
            try:
                reply = upstream.recv(2048)
                if client is not None:
                    self.sock.sendto(reply, client)
            except TimeoutError:
                pass

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def coap_server() -> Iterator[CoapServer]:
    server = CoapServer().start()
    yield server
    server.stop()


SEND = """
import json
from sensorboard.transport.coap import CoapTransport
class Cfg:
    device_id = "dev1"
    coap_host = "127.0.0.1"
    coap_port = {port}
    coap_ack_timeout_s = 0.2
    coap_max_retransmit = {retransmit}
    coap_token = "tok-123"
t = CoapTransport(Cfg(), "b00t")
ok = t.send(7, b'{{"v":1,"dev":"dev1","seq":7,"boot":"b00t","t0":1763900000,"r":[]}}')
print(json.dumps([ok, t.last_ack, t.retransmissions, t.last_error]))
"""


def test_post_reaches_aiocoap_and_returns_the_ack(
    micropython_bin: str, firmware_build: Path, coap_server: CoapServer
) -> None:
    code = SEND.format(port=coap_server.port, retransmit=4)
    out = run_on_board(micropython_bin, firmware_build, code)
    ((ok, ack, retransmissions, _),) = json_lines(out)
    assert ok is True and ack == [7, 3, 0, 0] and retransmissions == 0
    ((path, content_format, payload, query),) = coap_server.seen
    assert path == ("dev1", "readings")  # under the tw/v1 resource: tw/v1/dev1/readings
    assert content_format == 50
    assert query == ("t=tok-123",)  # the ingest token, as the collector expects it
    assert payload.startswith(b'{"v":1,"dev":"dev1","seq":7')


def test_lost_datagrams_are_retransmitted_and_delivered_once(
    micropython_bin: str, firmware_build: Path, coap_server: CoapServer
) -> None:
    relay = LossyRelay(coap_server.port, drop=2)
    try:
        code = SEND.format(port=relay.port, retransmit=4)
        ((ok, ack, retransmissions, _),) = json_lines(
            run_on_board(micropython_bin, firmware_build, code)
        )
    finally:
        relay.close()
    assert ok is True and ack == [7, 3, 0, 0]
    assert retransmissions == 2
    assert len(coap_server.seen) == 1


def test_no_server_gives_up_after_max_retransmit(
    micropython_bin: str, firmware_build: Path, coap_server: CoapServer
) -> None:
    relay = LossyRelay(coap_server.port, drop=100)
    try:
        code = SEND.format(port=relay.port, retransmit=2)
        ((ok, ack, retransmissions, error),) = json_lines(
            run_on_board(micropython_bin, firmware_build, code)
        )
    finally:
        relay.close()
    assert ok is False and ack is None
    assert retransmissions == 2 and relay.received == 3
    assert "no response" in error
