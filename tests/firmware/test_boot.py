"""``boot.py`` and ``main.py`` as MicroPython runs them at power-on, on the unix port."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.firmware.board import board_env
from tests.firmware.conftest import board_config


def run(micropython_bin: str, root: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [micropython_bin, "-X", "heapsize=64k", script],
        cwd=root,
        env=board_env(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_boot_runs_without_wifi_hardware(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    root = tmp_path / "board"
    shutil.copytree(firmware_build, root)
    (root / "config.json").write_text(json.dumps(board_config(wifi_ssid="farm")))
    result = run(micropython_bin, root, "boot.py")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_main_refuses_a_config_it_cannot_run(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    root = tmp_path / "board"
    shutil.copytree(firmware_build, root)
    (root / "config.json").write_text('{"transport": "mqtt", "sample_period_s": -1}')
    result = run(micropython_bin, root, "main.py")
    assert result.returncode == 2
    assert "TW config sample_period_s: invalid, default used" in result.stdout
    assert "TW config fatal device_id: missing" in result.stdout
    assert "TW config fatal mqtt_host: missing" in result.stdout
