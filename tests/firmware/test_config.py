"""config.json validation on the board: bad values become defaults with a reason, missing
essentials are fatal, the board profile supplies pins."""

from __future__ import annotations

import json
from pathlib import Path

from tests.firmware.mp import json_lines, run_on_board

LOAD = """
import json
from sensorboard import config
cfg = config.load({root!r})
print(json.dumps({{"errors": cfg.errors, "fatal": config.fatal(cfg),
    "port": cfg.mqtt_port, "period": cfg.sample_period_s, "pin": cfg.onewire_pin,
    "sensors": [s["id"] for s in cfg.sensors], "transport": cfg.transport,
    "flush": cfg.flush_records, "watchdog": cfg.watchdog_s}}))
"""


def load(micropython_bin: str, build: Path, root: Path, config: object, board: object = None):
    (root / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if board is not None:
        (root / "board.json").write_text(json.dumps(board))
    return json_lines(run_on_board(micropython_bin, build, LOAD.format(root=str(root))))[0]


def test_valid_config_loads_clean(micropython_bin: str, firmware_build: Path, tmp_path: Path):
    cfg = {
        "device_id": "dev-1",
        "mqtt_host": "broker.lan",
        "sensors": [{"id": "t1", "kind": "sim"}],
    }
    out = load(micropython_bin, firmware_build, tmp_path, cfg)
    assert out["errors"] == [] and out["fatal"] == []
    assert out["port"] == 1883 and out["period"] == 10 and out["transport"] == "mqtt"


def test_bad_values_fall_back_to_defaults_with_reasons(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    cfg = {
        "device_id": "dev-1",
        "mqtt_host": "broker.lan",
        "mqtt_port": 99999,
        "sample_period_s": "fast",
        "watchdog_s": True,
        "transport": "pigeon",
        "ring_records": 8,
        "flush_records": 100,
        "colour": "blue",
        "sensors": [
            {"id": "t1", "kind": "sim"},
            {"id": "t1", "kind": "sim"},
            {"id": "bad id!", "kind": "sim"},
            {"id": "t3", "kind": "thermocouple"},
            "nonsense",
        ],
    }
    out = load(micropython_bin, firmware_build, tmp_path, cfg)
    assert out["fatal"] == []
    assert out["port"] == 1883 and out["period"] == 10 and out["watchdog"] == 30
    assert out["transport"] == "mqtt" and out["flush"] == 8
    assert out["sensors"] == ["t1"]
    text = " | ".join(out["errors"])
    for name in ("mqtt_port", "sample_period_s", "watchdog_s", "transport", "colour"):
        assert name in text
    assert text.count("sensors[") == 4


def test_missing_essentials_are_fatal(micropython_bin: str, firmware_build: Path, tmp_path: Path):
    out = load(micropython_bin, firmware_build, tmp_path, {"transport": "coap", "sensors": []})
    assert len(out["fatal"]) == 3  # no device id, no CoAP host, no sensor


def test_broken_json_is_reported_not_raised(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    out = load(micropython_bin, firmware_build, tmp_path, "device_id = dev-1\n")
    assert any(e.endswith("config.json: invalid, default used") for e in out["errors"])
    assert out["fatal"]


def test_board_profile_supplies_pins_and_config_overrides_it(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    board = json.loads(Path("hardware/boards/esp32-devkitc.json").read_text())
    cfg = {"device_id": "d", "mqtt_host": "h", "watchdog_s": 10}
    out = load(micropython_bin, firmware_build, tmp_path, cfg, board)
    assert out["pin"] == 4 and out["watchdog"] == 10 and out["sensors"] == ["t1"]
    assert out["errors"] == []
