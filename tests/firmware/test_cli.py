"""Technician tooling: ``thermowatch firmware build|flash|check`` (flash and check against the
unix port through ``unix:DIR``, and a serial port where no board answers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.firmware.conftest import DEVICE_PASSWORD, board_config
from tests.support.broker import MosquittoBroker
from thermowatch.firmware_cli import board_names, firmware_files

REPO = Path(__file__).resolve().parents[2]


def thermowatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "thermowatch.cli", "firmware", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
        check=False,
    )


def test_every_board_builds_and_every_firmware_file_compiles(tmp_path: Path) -> None:
    assert {"esp32-devkitc", "pico-w", "unix"} <= set(board_names())
    sources = {f.target for f in firmware_files()}
    for board in ("esp32-devkitc", "pico-w"):
        result = thermowatch("build", "--board", board, "--out", str(tmp_path))
        assert result.returncode == 0, result.stderr
        manifest = json.loads((tmp_path / board / "manifest.json").read_text())
        built = {f["path"] for f in manifest["files"]}
        assert sources <= built and "board.json" in built
        assert all((tmp_path / board / p).stat().st_size > 0 for p in sources)
    assert "sensorboard/app.mpy" in sources and "lib/umqtt/simple.mpy" in sources
    assert "shared/detectors/threshold.mpy" in sources
    # CPython-only modules never go onto a board.
    assert "shared/decode.mpy" not in sources
    assert "shared/detectors/vectorized.mpy" not in sources


def test_unknown_board_is_a_clear_error(tmp_path: Path) -> None:
    result = thermowatch("build", "--board", "arduino-uno", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "unknown board 'arduino-uno'" in result.stderr and "pico-w" in result.stderr


def write_bundle(path: Path, **overrides: Any) -> Path:
    """A board config.json written by hand (the tool takes it as it is)."""
    path.write_text(json.dumps(board_config(**overrides)))
    return path


# What the collector's POST /api/v1/devices answers (collector.api.schemas.ProvisioningBundle).
PROVISIONING_BUNDLE = {
    "device_id": "kitchen-1",
    "mqtt": {"host": "broker.example", "port": 1883, "username": "kitchen-1", "password": "pw-1"},
    "coap": {"url": "coap://collector.example:5684", "token": "tok-1"},
    "http": {"url": "https://collector.example/api/v1/ingest", "token": "tok-1"},
    "sensors": [
        {"sensor_id": "28-0316a279d1ff", "label": "Freezer", "rom_address": "28-0316a279d1ff"},
        {"sensor_id": "board", "label": None, "rom_address": None},
        {"sensor_id": "humidity", "label": None, "rom_address": None},
    ],
    "config": {
        "v": 1,
        "sample_period_s": 30,
        "sensors": {"28-0316a279d1ff": {"high_c": -15.0, "hysteresis_c": 1.0}},
    },
}


def test_provisioning_bundle_becomes_the_board_config(tmp_path: Path) -> None:
    bundle = tmp_path / "kitchen-1.json"
    bundle.write_text(json.dumps(PROVISIONING_BUNDLE))
    result = thermowatch(
        "flash",
        "--port",
        "/dev/ttyUSB0",
        "--bundle",
        str(bundle),
        "--board",
        "pico-w",
        "--wifi-ssid",
        "farm",
        "--wifi-password",
        "wifi-secret",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout[result.stdout.index("config.json:\n") + 13 :])
    assert config["device_id"] == "kitchen-1" and config["mqtt_username"] == "kitchen-1"
    assert config["mqtt_password"] == "***" and config["wifi_password"] == "***"
    assert config["coap_host"] == "collector.example" and config["coap_port"] == 5684
    assert config["coap_token"] == "tok-1" and config["sample_period_s"] == 30
    freezer, board = config["sensors"]
    assert freezer["kind"] == "ds18b20" and freezer["threshold"] == {
        "high_c": -15.0,
        "hysteresis_c": 1.0,
    }
    rom = bytes.fromhex(freezer["rom"])
    assert rom[:7] == bytes.fromhex("28ffd179a21603")  # family, serial LSB first
    assert crc8(rom) == 0  # the last byte is the Dallas CRC of the first seven
    assert board == {"id": "board", "kind": "rp2040"}
    assert "'humidity': no board driver" in result.stderr
    assert "pw-1" not in result.stdout and "wifi-secret" not in result.stdout


def crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def test_flash_dry_run_shows_files_and_config_and_writes_nothing(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "dev1.json")
    target = tmp_path / "board"
    result = thermowatch("flash", "--port", f"unix:{target}", "--bundle", str(bundle), "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "would write" in out and "(board esp32-devkitc)" in out
    for path in ("boot.py", "main.py", "sensorboard/app.mpy", "lib/umqtt/simple.mpy"):
        assert path in out
    assert "config.json" in out
    assert '"device_id": "dev1"' in out
    assert DEVICE_PASSWORD not in out and '"mqtt_password": "***"' in out
    assert not target.exists()


def test_flash_to_a_port_where_no_board_answers(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "dev1.json")
    result = thermowatch("flash", "--port", "/dev/ttyNOBOARD0", "--bundle", str(bundle))
    assert result.returncode == 2
    assert "no board answered on /dev/ttyNOBOARD0" in result.stderr


def test_flash_needs_a_bundle_or_a_device_id(tmp_path: Path) -> None:
    result = thermowatch("flash", "--port", "unix:x")
    assert result.returncode == 2 and "--bundle" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"mqtt_host": "h"}')
    result = thermowatch("flash", "--port", "unix:x", "--bundle", str(bad))
    assert result.returncode == 2 and "device_id" in result.stderr


def test_flash_then_self_test_on_the_unix_port(tmp_path: Path, broker: MosquittoBroker) -> None:
    sensors = [{"id": "t1", "kind": "sim"}, {"id": "t2", "kind": "sim", "script": [85.0]}]
    bundle = write_bundle(tmp_path / "dev1.json", mqtt_port=broker.port, sensors=sensors)
    target = tmp_path / "board"
    flashed = thermowatch(
        "flash", "--port", f"unix:{target}", "--bundle", str(bundle), "--board", "unix"
    )
    assert flashed.returncode == 0, flashed.stderr
    assert (target / "sensorboard" / "app.mpy").exists()
    assert json.loads((target / "config.json").read_text())["device_id"] == "dev1"

    checked = thermowatch("check", "--port", f"unix:{target}", "--json")
    results = {r["check"]: r for r in json.loads(checked.stdout)}
    assert results["probe_read"]["ok"] is True
    # The second probe answers with the 85 C power-on value: the self-test flags it.
    faults = results["probe_faults"]
    assert faults["ok"] is False and "power_on" in faults["detail"]
    assert results["clock_sync"]["ok"] is True
    assert results["wifi_rssi"]["ok"] is None  # no Wi-Fi on the unix port
    assert results["broker"]["ok"] is True
    assert checked.returncode == 1  # a failed check fails the command

    table = thermowatch("check", "--port", f"unix:{target}").stdout
    assert "probe_faults  FAIL" in table and "broker        PASS" in table


def test_self_test_reports_an_unreachable_broker(tmp_path: Path) -> None:
    sensors = [{"id": "t1", "kind": "sim"}]
    bundle = write_bundle(tmp_path / "dev1.json", mqtt_port=1, sensors=sensors)
    target = tmp_path / "board"
    assert (
        thermowatch(
            "flash", "--port", f"unix:{target}", "--bundle", str(bundle), "--board", "unix"
        ).returncode
        == 0
    )
    checked = thermowatch("check", "--port", f"unix:{target}", "--json")
    results = {r["check"]: r for r in json.loads(checked.stdout)}
    assert results["broker"]["ok"] is False and "127.0.0.1:1" in results["broker"]["detail"]
    assert results["probe_faults"]["ok"] is True


def test_a_tls_bundle_is_flagged_because_boards_have_no_tls_yet(tmp_path: Path) -> None:
    bundle = tmp_path / "kitchen-1.json"
    tls_mqtt = {**PROVISIONING_BUNDLE["mqtt"], "tls": True, "ca": "-----BEGIN CERTIFICATE-----"}
    bundle.write_text(json.dumps({**PROVISIONING_BUNDLE, "mqtt": tls_mqtt}))
    result = thermowatch(
        "flash", "--port", "/dev/ttyUSB0", "--bundle", str(bundle), "--board", "pico-w",
        "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the bundle asks for TLS" in result.stderr
