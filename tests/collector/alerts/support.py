"""Helpers for the alert tests: rules written straight to the database, committed work built the
way the group-commit writer hands it to its listeners, and readers of the alert tables."""

from __future__ import annotations

import json

import psycopg

from collector.ingest.work import Outcome, Work
from shared.decode import Event


def add_rule(
    conn: psycopg.Connection,
    kind: str,
    params: dict,
    *,
    name: str | None = None,
    severity: str = "warning",
    home_id: int | None = None,
    device_id: str | None = None,
    sensor_id: str | None = None,
) -> int:
    from collector.alerts.rules import validate_params

    row = conn.execute(
        "INSERT INTO alert_rules (name, kind, params, severity, home_id, device_id, sensor_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            name or kind,
            kind,
            json.dumps(validate_params(kind, params)),
            severity,
            home_id,
            device_id,
            sensor_id,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def work(
    device: str,
    readings: list[tuple[str, int, float | None]],
    events: list[tuple[str, int, str, float]] | None = None,
) -> Work:
    """Committed work for ``device``: readings ``(sensor, t_ms, value or None for a fault)``."""
    rows = [
        (device, s, t, v, 0 if v is not None else 1, None if v is not None else "crc")
        for s, t, v in readings
    ]
    evs = [Event(s, t, k, v, None) for s, t, k, v in (events or [])]
    return Work(transport="test", outcome=Outcome(device, 1, "boot1"), rows=rows, events=evs)


def alerts(conn: psycopg.Connection) -> list[dict]:
    cur = conn.execute("SELECT * FROM alerts ORDER BY id")
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def history(conn: psycopg.Connection, alert_id: int) -> list[tuple[str | None, str]]:
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT from_state, to_state FROM alert_history WHERE alert_id = %s ORDER BY id",
            (alert_id,),
        ).fetchall()
    ]
