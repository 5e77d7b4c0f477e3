"""Start the edge agent as a real subprocess (``python -m edge run``) and read its spool."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import psycopg

from tests.support.processes import ManagedProcess

DEVICE = "gw-test"


def start_agent(
    spool_path: Path,
    broker_port: int,
    *,
    simulate: int = 0,
    sensors: list[dict[str, Any]] | None = None,
    name: str = "edge-agent",
    **settings: Any,
) -> ManagedProcess:
    """``settings`` become ``THERMOWATCH_EDGE_<NAME>`` variables (lists and dicts as JSON)."""
    env = {
        **os.environ,
        "THERMOWATCH_EDGE_DEVICE_ID": DEVICE,
        "THERMOWATCH_EDGE_MQTT_PORT": str(broker_port),
        "THERMOWATCH_EDGE_SPOOL_PATH": str(spool_path),
        # The test machine's kernel may call its clock unsynchronised; the flag has its own tests.
        "THERMOWATCH_EDGE_CLOCK_SYNCED": "true",
        "THERMOWATCH_EDGE_BACKOFF_MIN_S": "0.2",
        "THERMOWATCH_EDGE_BACKOFF_MAX_S": "1.0",
        "THERMOWATCH_EDGE_STATUS_INTERVAL_S": "1",
        "THERMOWATCH_EDGE_BATCH_MAX_AGE_S": "0.5",
        "THERMOWATCH_EDGE_ACK_TIMEOUT_S": "5",
    }
    if sensors is not None:
        env["THERMOWATCH_EDGE_SENSORS"] = json.dumps(sensors)
    for key, value in settings.items():
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        env[f"THERMOWATCH_EDGE_{key.upper()}"] = text.lower() if isinstance(value, bool) else text
    args = [sys.executable, "-m", "edge", "run"]
    if simulate:
        args += ["--simulate", str(simulate)]
    return ManagedProcess(args, env, name).start()


def spool_snapshot(spool_path: Path) -> dict[str, Any]:
    """What the spool holds right now: rows, how many were ever added, drops, unacked batches."""
    db = sqlite3.connect(str(spool_path))
    try:
        seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        dropped = db.execute("SELECT value FROM meta WHERE key = 'dropped_total'").fetchone()
        return {
            "rows": db.execute("SELECT sensor_id, time_ms FROM readings ORDER BY id").fetchall(),
            "ever_added": seq[0] if seq else 0,
            "dropped": json.loads(dropped[0]) if dropped else 0,
            "batches": db.execute("SELECT count(*) FROM batches").fetchone()[0],
        }
    finally:
        db.close()


def stored_readings(database_url: str, device: str = DEVICE) -> list[tuple[Any, ...]]:
    """``(sensor_id, time_ms, value, quality, fault)`` rows the collector stored for ``device``."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT sensor_id, (extract(epoch FROM time) * 1000)::bigint, value, quality, fault "
            "FROM readings WHERE device_id = %s ORDER BY sensor_id, time",
            (device,),
        ).fetchall()


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from the kernel's /proc accounting."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
