"""Config pushed by the collector, applied by the board firmware on the real MicroPython unix port
(64 KB heap) through a real Mosquitto with per-device passwords and ACLs, with the real collector
acknowledging into TimescaleDB: the new sample period and thresholds take effect live, survive a
reboot from ``pushed.json``, a retained message seen again at each connect does not rewrite
flash, and a bad push is reported value by value without stopping the board."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.api.provisioning import config_payload
from collector.api.schemas import DeviceConfig
from shared.decode import DecodedBatch, decode_batch
from tests.firmware.board import UnixBoard
from tests.firmware.conftest import COLLECTOR_PASSWORD, COLLECTOR_USER, DEVICE, board_config
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for
from tests.support.processes import CollectorProcess

CONFIG_TOPIC = f"tw/v1/{DEVICE}/config"
READINGS_TOPIC = f"tw/v1/{DEVICE}/readings"


@pytest.fixture
def admin(secure_broker: MosquittoBroker) -> Iterator[TestClient]:
    """Publishes configs as the collector does and watches what the board sends."""
    client = TestClient(secure_broker.port, username=COLLECTOR_USER, password=COLLECTOR_PASSWORD)
    client.subscribe(READINGS_TOPIC)
    yield client
    client.close()


def steady_board(
    micropython_bin: str, build: Path, root: Path, port: int, **extra: Any
) -> UnixBoard:
    """A board sampling every 50 ms: t1 holds 20.0 °C, t2 4.5 °C; t1's own threshold (high 25 °C)
    never fires at that temperature."""
    config = board_config(
        mqtt_port=port,
        sensors=[
            {"id": "t1", "kind": "sim", "script": [20.0]},
            {"id": "t2", "kind": "sim", "script": [4.5]},
        ],
        detectors={},
        **extra,
    )
    config["sensors"][0]["threshold"] = {"high_c": 25.0, "min_duration_s": 0}
    return UnixBoard(micropython_bin, build, root, config)


def pushed(**config: Any) -> bytes:
    """The exact bytes the collector's admin endpoint publishes for this config."""
    return config_payload(DeviceConfig.model_validate(config))


def publish_retained(client: TestClient, payload: bytes) -> None:
    info = client.client.publish(CONFIG_TOPIC, payload, qos=1, retain=True)
    info.wait_for_publish(10)


def batches_since(client: TestClient, start: int) -> list[DecodedBatch]:
    return [decode_batch(p) for p in client.received(READINGS_TOPIC)[start:]]


def t1_times(batches: list[DecodedBatch]) -> list[int]:
    times = {r.time_ms for b in batches for r in b.readings if r.sensor_id == "t1"}
    return sorted(times)


def gaps(times: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_pushed_period_and_threshold_apply_live_and_survive_a_reboot(
    micropython_bin: str,
    firmware_build: Path,
    tmp_path: Path,
    secure_broker: MosquittoBroker,
    mqtt_collector: CollectorProcess,
    admin: TestClient,
) -> None:
    board = steady_board(micropython_bin, firmware_build, tmp_path / "board", secure_broker.port)
    board.start()
    try:
        board.wait_log("TW ack", 2)
        before = batches_since(admin, 0)
        assert max(gaps(t1_times(before))) < 300  # sampling every 50 ms
        assert all(not b.events for b in before)

        mark = len(admin.received(READINGS_TOPIC))
        publish_retained(
            admin,
            pushed(
                sample_period_s=0.4,
                sensors={"t1": {"high_c": 19.5, "hysteresis_c": 0.25, "min_duration_s": 0}},
            ),
        )
        board.wait_log("TW pushed saved")
        # Readings sampled before the push may still be on their way; the newest ones must be
        # 0.4 s apart (at 50 ms, five gaps in a row that long cannot happen).
        wait_for(
            lambda: min(gaps(t1_times(batches_since(admin, mark)))[-5:] or [0]) >= 350,
            30,
            what="readings at the new period",
        )
        after = batches_since(admin, mark)
        events = {(e.sensor_id, e.time_ms, e.kind, e.detail) for b in after for e in b.events}
        # 20.0 °C is above the new 19.5 °C limit: the threshold fires once and stays high.
        assert [(e[0], e[2], e[3]) for e in events] == [("t1", "threshold_high", 19.5)]
        saved = json.loads((board.root / "pushed.json").read_text())
        assert saved["sample_period_s"] == 0.4
        assert saved["sensors"]["t1"] == {"high_c": 19.5, "hysteresis_c": 0.25, "min_duration_s": 0}

        # Reboot with the retained config gone from the broker: the board keeps it from flash.
        board.kill()
        publish_retained(admin, b"")
        mark = len(admin.received(READINGS_TOPIC))
        booted_ms = int(time.time() * 1000)  # the board's clock is this machine's
        board.start()
        board.wait_log("TW pushed loaded")

        def sampled_since_boot() -> list[int]:
            return [t for t in t1_times(batches_since(admin, mark)) if t >= booted_ms]

        wait_for(lambda: len(sampled_since_boot()) >= 6, 30, what="readings after boot")
        assert min(gaps(sampled_since_boot())) >= 350
        rebooted = batches_since(admin, mark)
        assert any(e.kind == "threshold_high" for b in rebooted for e in b.events)
        assert "TW pushed config" not in board.log()  # the empty (cleared) message changed nothing
    finally:
        board.kill()


def test_a_retained_config_seen_at_every_connect_is_written_to_flash_once(
    micropython_bin: str,
    firmware_build: Path,
    tmp_path: Path,
    secure_broker: MosquittoBroker,
    admin: TestClient,
) -> None:
    publish_retained(admin, pushed(sensors={"t1": {"high_c": 30.0}}))
    board = steady_board(micropython_bin, firmware_build, tmp_path / "board", secure_broker.port)
    board.start()
    try:
        board.wait_log("TW pushed saved")
        written = (board.root / "pushed.json").stat().st_mtime_ns
        secure_broker.restart()  # the board reconnects and gets the retained config again
        board.wait_log("TW connected", 2)
        board.wait_log("TW pushed unchanged")
        board.kill()
        board.start()  # a reboot: loaded from flash, then the same config again from the broker
        board.wait_log("TW pushed loaded")
        board.wait_log("TW pushed unchanged", 2)
        assert board.log().count("TW pushed saved") == 1
        assert (board.root / "pushed.json").stat().st_mtime_ns == written

        # A real change is written.
        publish_retained(admin, pushed(sensors={"t1": {"high_c": 31.0}}))
        board.wait_log("TW pushed saved", 2)
        saved = json.loads((board.root / "pushed.json").read_text())
        assert saved == {"v": 1, "sensors": {"t1": {"high_c": 31.0}}}
    finally:
        board.kill()


def test_an_invalid_push_is_reported_and_the_valid_rest_applied(
    micropython_bin: str,
    firmware_build: Path,
    tmp_path: Path,
    secure_broker: MosquittoBroker,
    mqtt_collector: CollectorProcess,
    admin: TestClient,
) -> None:
    board = steady_board(micropython_bin, firmware_build, tmp_path / "board", secure_broker.port)
    board.start()
    try:
        board.wait_log("TW connected")
        # One at a time: the board takes only the newest of messages that arrive together.
        for count, payload in enumerate((b"{not json", b'{"v":2,"sample_period_s":1}', b"[1]")):
            publish_retained(admin, payload)
            board.wait_log("TW pushed config: invalid, ignored", count + 1)
        assert not (board.root / "pushed.json").exists()

        mark = len(admin.received(READINGS_TOPIC))
        bad = {
            "v": 1,
            "sample_period_s": -1,
            "colour": "red",
            "sensors": {
                "t1": {"high_c": "hot", "low_c": 10.0, "sample_period_s": 5},
                "t2": {"high_c": 2.0, "low_c": 3.0},  # low above high: both kept as they were
                "t9": {"high_c": 1.0},
            },
        }
        publish_retained(admin, json.dumps(bad).encode())
        board.wait_log("TW pushed saved")
        log = board.log()
        for reason in (
            "TW pushed sample_period_s: invalid, ignored",
            "TW pushed colour: unknown, ignored",
            "TW pushed sensors.t1.high_c: invalid, ignored",
            "TW pushed sensors.t1.sample_period_s: unknown, ignored",
            "TW pushed sensors.t2: low_c must be below high_c",
            "TW pushed sensors.t9: unknown, ignored",
        ):
            assert reason in log
        # Only the valid value was kept; the board still runs at its 50 ms period.
        saved = json.loads((board.root / "pushed.json").read_text())
        assert saved == {"v": 1, "sensors": {"t1": {"low_c": 10.0}}}
        wait_for(lambda: len(t1_times(batches_since(admin, mark))) >= 10, 30, what="readings")
        assert board.alive()
        assert max(gaps(t1_times(batches_since(admin, mark + 1)))) < 300
    finally:
        board.kill()
