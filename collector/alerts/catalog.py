"""A short-lived cache of what the evaluation needs from the database besides readings: the
rules, and each device's home and name and each sensor's label.

Collectors are stateless, so this is only a cache with a time to live of a second or two: a rule
edited through any instance applies everywhere within that time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from collector.alerts.messages import Subject
from collector.alerts.rules import RULE_COLUMNS, Rule, applicable, rule_from_row

# The home a device belongs to (devices.home_id comes with the auth migration branch).
DEVICE_HOME_SQL = "d.home_id"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    home_id: int | None
    name: str | None


class Catalog:
    def __init__(self, *, ttl_s: float = 2.0, clock=time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._rules: list[Rule] = []
        self._rules_until = 0.0
        self._devices: dict[str, tuple[DeviceInfo, float]] = {}
        self._labels: dict[tuple[str, str], tuple[str | None, float]] = {}

    def rules(self, conn: psycopg.Connection) -> list[Rule]:
        now = self._clock()
        if now >= self._rules_until:
            rows = conn.execute(f"SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id").fetchall()
            self._rules = [rule_from_row(r) for r in rows]
            self._rules_until = now + self.ttl_s
        return self._rules

    def devices(self, conn: psycopg.Connection, device_ids: set[str]) -> dict[str, DeviceInfo]:
        now = self._clock()
        missing = [d for d in device_ids if (hit := self._devices.get(d)) is None or hit[1] <= now]
        if missing:
            rows = conn.execute(
                f"SELECT d.device_id, {DEVICE_HOME_SQL}, d.name FROM devices d "
                "WHERE d.device_id = ANY(%s)",
                (missing,),
            ).fetchall()
            found = {r[0]: DeviceInfo(r[1], r[2]) for r in rows}
            for d in missing:
                self._devices[d] = (found.get(d, DeviceInfo(None, None)), now + self.ttl_s)
        return {d: self._devices[d][0] for d in device_ids}

    def subject(self, conn: psycopg.Connection, device_id: str, sensor_id: str) -> Subject:
        now = self._clock()
        info = self.devices(conn, {device_id})[device_id]
        label: str | None = None
        if sensor_id:
            hit = self._labels.get((device_id, sensor_id))
            if hit is None or hit[1] <= now:
                row = conn.execute(
                    "SELECT label FROM sensors WHERE device_id = %s AND sensor_id = %s",
                    (device_id, sensor_id),
                ).fetchone()
                hit = (row[0] if row else None, now + self.ttl_s)
                self._labels[(device_id, sensor_id)] = hit
            label = hit[0]
        return Subject(device_id, sensor_id, label, info.name)

    def applicable(
        self, conn: psycopg.Connection, device_id: str, sensor_id: str, home_id: int | None
    ) -> list[Rule]:
        return applicable(self.rules(conn), device_id, sensor_id, home_id)
