"""The firmware's MQTT side against a real Mosquitto with per-device passwords and ACLs: what it
publishes, that only the collector's ack (for this boot and sequence) frees the spool, and that
a refused login keeps everything on flash."""

from __future__ import annotations

import json
from pathlib import Path

from shared.decode import decode_batch
from tests.firmware.board import UnixBoard
from tests.firmware.conftest import COLLECTOR_PASSWORD, COLLECTOR_USER, board_config
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for


def collector_client(broker: MosquittoBroker) -> TestClient:
    client = TestClient(broker.port, username=COLLECTOR_USER, password=COLLECTOR_PASSWORD)
    client.subscribe("tw/v1/dev1/#")
    return client


def test_board_publishes_batches_and_status_and_waits_for_the_ack(
    micropython_bin: str, firmware_build: Path, tmp_path: Path, secure_broker: MosquittoBroker
) -> None:
    client = collector_client(secure_broker)
    board = UnixBoard(
        micropython_bin,
        firmware_build,
        tmp_path / "board",
        board_config(mqtt_port=secure_broker.port, ack_timeout_s=0.5),
    )
    board.start()
    try:
        client.wait_received(3, "tw/v1/dev1/readings")
        status = json.loads(client.received("tw/v1/dev1/status")[0])
        assert status["state"] == "online" and status["boot"]
        batches = [decode_batch(p) for p in client.received("tw/v1/dev1/readings")]
        # Without an ack the same records are sent again, each time under a new sequence number.
        assert batches[0].errors == []
        assert [b.seq for b in batches[:3]] == [0, 1, 2]
        # (the resend may carry more: records spooled meanwhile join the batch)
        assert batches[1].readings[: len(batches[0].readings)] == batches[0].readings
        assert "TW ack" not in board.log()
        held = board.spooled_records()
        assert held >= len(batches[0].readings)

        # An ack for another boot, then one for an old sequence number: both ignored.
        boot = batches[-1].boot_id
        client.publish_all([("tw/v1/dev1/ack", b'{"v":1,"seq":0,"boot":"other","stored":9}')])
        client.publish_all([("tw/v1/dev1/ack", b'{"v":1,"seq":0,"boot":"%s"}' % boot.encode())])
        # The ack for the batch in flight frees exactly its records.
        wait_for(lambda: len(client.received("tw/v1/dev1/readings")) > len(batches), 10)
        latest = decode_batch(client.received("tw/v1/dev1/readings")[-1])
        ack = b'{"v":1,"seq":%d,"boot":"%s","stored":%d,"dup":0,"rej":0}' % (
            latest.seq,
            latest.boot_id.encode(),
            len(latest.readings),
        )
        client.publish_all([("tw/v1/dev1/ack", ack)])
        board.wait_log(f"TW ack {latest.seq} ")
        assert board.log().count("TW ack") == 1
    finally:
        board.kill()
        client.close()


def test_refused_login_keeps_readings_on_flash(
    micropython_bin: str, firmware_build: Path, tmp_path: Path, secure_broker: MosquittoBroker
) -> None:
    client = collector_client(secure_broker)
    board = UnixBoard(
        micropython_bin,
        firmware_build,
        tmp_path / "board",
        board_config(mqtt_port=secure_broker.port, mqtt_password="wrong"),
    )
    board.start()
    try:
        wait_for(lambda: board.spooled_records() >= 40, 30, what="readings on flash")
        assert board.alive()
    finally:
        board.kill()
        client.close()
    assert client.received("tw/v1/dev1/readings") == []
    assert "TW connected" not in board.log()


def test_board_cannot_publish_as_another_device(
    micropython_bin: str, firmware_build: Path, tmp_path: Path, secure_broker: MosquittoBroker
) -> None:
    """The board logs in as dev1 but claims to be dev2: the broker's ACL drops its batches."""
    client = TestClient(secure_broker.port, username=COLLECTOR_USER, password=COLLECTOR_PASSWORD)
    client.subscribe("tw/v1/#")
    board = UnixBoard(
        micropython_bin,
        firmware_build,
        tmp_path / "board",
        board_config(mqtt_port=secure_broker.port, device_id="dev2"),
    )
    board.start()
    try:
        board.wait_log("TW connected")
        wait_for(lambda: board.spooled_records() >= 30, 30, what="readings on flash")
    finally:
        board.kill()
        client.close()
    assert client.received("tw/v1/dev2/readings") == []
