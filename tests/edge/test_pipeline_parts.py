"""Validation flags, detectors with persisted state, clock check, config sources, sd_notify."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from edge.clock import ClockWatch, kernel_clock_synced
from edge.config import (
    ConfigError,
    DetectorConfig,
    PushedConfig,
    apply_pushed,
    load_settings,
)
from edge.detect import SensorDetectors
from edge.sdnotify import Notifier
from edge.validate import Reading, validate
from shared import protocol

RANGE = (-55.0, 125.0)


def test_validate_sets_quality_flags() -> None:
    ok = validate("s1", 1000, 21.5, None, RANGE, clock_synced=True)
    assert ok == Reading("s1", 1000, 21.5, protocol.Q_OK, None)
    unsynced = validate("s1", 1000, 21.5, None, RANGE, clock_synced=False)
    assert unsynced.quality == protocol.Q_CLOCK_UNSYNCED and unsynced.value == 21.5
    fault = validate("s1", 1000, 85.0, protocol.FAULT_POWER_ON, RANGE, clock_synced=False)
    assert fault.value is None and fault.fault == protocol.FAULT_POWER_ON
    assert fault.quality == protocol.Q_PROBE_FAULT | protocol.Q_CLOCK_UNSYNCED
    assert validate("s1", 0, 300.0, None, RANGE, True).fault == protocol.FAULT_OUT_OF_RANGE
    assert validate("s1", 0, float("nan"), None, RANGE, True).fault == protocol.FAULT_READ_ERROR
    assert validate("s1", 0, None, "weird", RANGE, True).fault == protocol.FAULT_READ_ERROR


def test_detectors_raise_events_and_skip_faults() -> None:
    det = SensorDetectors("s1", DetectorConfig(high_c=30.0, hysteresis_c=1.0, min_duration_s=2))
    events = []
    for i, value in enumerate([25.0, 31.0, None, 31.0, 31.0, 29.5, 28.0, 28.0, 28.0]):
        quality = protocol.Q_PROBE_FAULT if value is None else 0
        events += det.update(Reading("s1", i * 1000, value, quality, None))
    assert [(e.kind, e.time_ms, e.detail) for e in events] == [
        (protocol.EV_THRESHOLD_HIGH, 3000, 30.0),
        (protocol.EV_THRESHOLD_CLEAR, 8000, 30.0),
    ]


def test_detector_state_survives_a_restart_through_get_and_set_state() -> None:
    cfg = DetectorConfig(high_c=30.0, min_duration_s=0, ewma_alpha=0.2)
    det = SensorDetectors("s1", cfg)
    det.update(Reading("s1", 0, 35.0, 0, None))  # fires
    saved = json.loads(json.dumps(det.get_state()))
    restored = SensorDetectors("s1", cfg)
    restored.set_state(saved)
    # Still high after the restart: the same condition does not fire a second time.
    assert restored.update(Reading("s1", 1000, 35.0, 0, None)) == []
    fresh = SensorDetectors("s1", cfg)
    assert [e.kind for e in fresh.update(Reading("s1", 1000, 35.0, 0, None))] == [
        protocol.EV_THRESHOLD_HIGH
    ]
    before = restored.get_state()
    restored.set_state("corrupt")  # ignored, no exception
    restored.configure(DetectorConfig(high_c=40.0, ewma_alpha=0.2))  # live change keeps state
    assert restored.get_state() == before


def test_ewma_anomaly_event_carries_the_z_score() -> None:
    det = SensorDetectors("s1", DetectorConfig(ewma_alpha=0.1, anomaly_z=4.0))
    events = []
    for i in range(30):
        events += det.update(Reading("s1", i * 1000, 20.0 + (i % 2) * 0.0625, 0, None))
    assert events == []
    events = det.update(Reading("s1", 31_000, 30.0, 0, None))
    assert len(events) == 1 and events[0].kind == protocol.EV_ANOMALY
    assert events[0].detail is not None and events[0].detail > 4.0


def test_clock_override_and_kernel_answer() -> None:
    assert ClockWatch(override=False).synced() is False
    assert ClockWatch(override=True).synced() is True
    assert kernel_clock_synced() in (True, False)  # Linux answers, whatever the state


def test_config_precedence_env_over_toml_over_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        json.dumps(
            {
                "device_id": "gw-1",
                "mqtt": {
                    "host": "mq.example",
                    "port": 8883,
                    "username": "gw-1",
                    "password": "p",
                },
                "coap": {"url": "coap://collector.example", "token": "t"},
                "http": {"url": "https://collector.example", "token": "h"},
                "sensors": [{"type": "cpu"}, {"type": "ds18b20", "id": "28-0316a2795dff"}],
            }
        )
    )
    toml = tmp_path / "edge.toml"
    toml.write_text('sample_period_s = 5\nmqtt_port = 1884\n[[sensors]]\ntype = "cpu"\n')
    monkeypatch.setenv("THERMOWATCH_EDGE_MQTT_PORT", "1999")
    s = load_settings(toml, bundle)
    assert s.device_id == "gw-1" and s.mqtt_host == "mq.example"
    assert s.mqtt_port == 1999 and s.sample_period_s == 5
    assert s.coap_token == "t" and s.http_url == "https://collector.example"
    assert [x.type for x in s.sensors] == ["cpu"]  # the file's list replaces the bundle's


def test_the_collectors_provisioning_bundle_is_accepted_as_it_is(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        json.dumps(
            {
                "device_id": "gw-2",
                "mqtt": {"host": "mq.example", "port": 1883, "username": "gw-2", "password": "x"},
                "coap": {"url": "coap://mq.example", "token": "t"},
                "http": {"url": "https://mq.example", "token": "h"},
                "sensors": [
                    {"sensor_id": "freezer", "label": "Freezer", "rom_address": "28-0316a279d1ff"},
                    {"sensor_id": "cpu", "label": None},
                    {"sensor_id": "sht-1", "label": "needs a bus from the TOML file"},
                ],
                "config": {"v": 1, "sample_period_s": 30, "sensors": {"freezer": {"high_c": -15}}},
            }
        )
    )
    s = load_settings(None, bundle)
    assert [(x.type, x.id) for x in s.sensors] == [("ds18b20", "freezer"), ("cpu", "cpu")]
    assert s.sensors[0].rom == "28-0316a279d1ff"  # type: ignore[union-attr]
    assert s.sample_period_s == 30 and s.sensors[0].detect.high_c == -15
    assert s.mqtt_username == "gw-2"


def test_invalid_config_is_refused_with_the_field_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sample_period_s"):
        load_settings(None, None, device_id="gw", sample_period_s=-1)
    with pytest.raises(ConfigError, match="valid protocol id"):
        load_settings(None, None, device_id="bad id/with slash")
    with pytest.raises(ConfigError, match="cannot read"):
        bad = tmp_path / "bad.toml"
        bad.write_text("this is = = not toml")
        load_settings(bad, None, defaults={"device_id": "gw"})


def test_pushed_config_changes_thresholds_and_period() -> None:
    s = load_settings(
        None,
        None,
        device_id="gw",
        sensors=[{"type": "simulator", "id": "sim-0"}, {"type": "cpu"}],
    )
    pushed = PushedConfig.model_validate(
        {"v": 1, "sample_period_s": 2, "sensors": {"sim-0": {"high_c": 28, "sample_period_s": 1}}}
    )
    after = apply_pushed(s, pushed)
    assert after.sample_period_s == 2
    assert after.sensors[0].sample_period_s == 1 and after.sensors[0].detect.high_c == 28
    assert after.sensors[1].detect.high_c is None


def test_sd_notify_sends_datagrams_to_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
    assert n.watchdog_interval_s == 1.0
    n.ready("sampling 4 sensors")
    assert server.recv(256) == b"READY=1\nSTATUS=sampling 4 sensors"
    n.watchdog(now=100.0)
    n.watchdog(now=100.5)  # not due yet
    n.watchdog(now=101.0)
    assert server.recv(64) == b"WATCHDOG=1" and server.recv(64) == b"WATCHDOG=1"
    server.settimeout(0.05)
    with pytest.raises(TimeoutError):
        server.recv(64)
    assert Notifier({}).notify("READY=1") is False  # outside systemd: a no-op
