"""`make demo` runs the whole production path on one machine and shows live readings."""

from __future__ import annotations

import re
import subprocess

from tests.support.net import free_port
from tests.support.processes import REPO, thermowatch_command


def test_demo_provisions_a_device_and_shows_its_live_readings() -> None:
    result = subprocess.run(
        thermowatch_command(
            "demo", "--duration-s", "12", "--sensors", "2", "--http-port", str(free_port())
        ),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Admin API key for this run" in out
    # Both simulated probes show a temperature read back from the collector's API.
    assert re.search(r"^  sim-0\s+-?\d+\.\d{3} °C  at 20\d\d-", out, re.M), out
    assert re.search(r"^  sim-1\s+-?\d+\.\d{3} °C  at 20\d\d-", out, re.M), out
