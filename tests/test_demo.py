"""`make demo` runs the whole production path on one machine and shows live readings."""

from __future__ import annotations

import re
import secrets
import subprocess

import psycopg

from tests.support.database import ADMIN_URL
from tests.support.net import free_port
from tests.support.processes import REPO, thermowatch_command


def test_demo_provisions_a_device_and_shows_its_live_readings() -> None:
    # A database of the test's own: the demo's usual one may hold a user's data, or a schema
    # of another checkout.
    database = f"thermowatch_demo_test_{secrets.token_hex(4)}"
    try:
        result = subprocess.run(
            thermowatch_command(
                "demo",
                "--duration-s",
                "12",
                "--sensors",
                "2",
                "--http-port",
                str(free_port()),
                "--database",
                database,
            ),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Admin API key for this run" in out
    # Both simulated probes show a temperature read back from the collector's API.
    assert re.search(r"^  sim-0\s+-?\d+\.\d{3} °C  at 20\d\d-", out, re.M), out
    assert re.search(r"^  sim-1\s+-?\d+\.\d{3} °C  at 20\d\d-", out, re.M), out
