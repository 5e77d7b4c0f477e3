"""A short-lived cache of what the evaluation needs from the database besides readings: the
rules, and each device's home and name and each sensor's label.

Collectors are stateless, so this is only a cache with a time to live of a second or two: a rule
edited through any instance applies everywhere within that time.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
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
        # The rules that could apply to a sensor, by scope: with thousands of rules across homes,
        # a sensor is matched against its own home's and device's rules and the defaults only.
        self._defaults: list[Rule] = []
        self._by_home: dict[int, list[Rule]] = {}
        self._by_device: dict[str, list[Rule]] = {}
        self._matched: dict[tuple[str, str, int | None], list[Rule]] = {}
        self._devices: dict[str, tuple[DeviceInfo, float]] = {}
        self._labels: dict[tuple[str, str], tuple[str | None, float]] = {}

    def rules(self, conn: psycopg.Connection) -> list[Rule]:
        now = self._clock()
        if now >= self._rules_until:
            # Retired rules (their device moved to another home) take no part, not even as a
            # disabled override.
            rows = conn.execute(
                f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE retired_at IS NULL ORDER BY id"
            ).fetchall()
            self._rules = [rule_from_row(r) for r in rows]
            self._rules_until = now + self.ttl_s
            self._index()
        return self._rules

    def _index(self) -> None:
        defaults: list[Rule] = []
        by_home: dict[int, list[Rule]] = {}
        by_device: dict[str, list[Rule]] = {}
        for rule in self._rules:
            if rule.device_id is not None:
                by_device.setdefault(rule.device_id, []).append(rule)
            elif rule.home_id is not None:
                by_home.setdefault(rule.home_id, []).append(rule)
            else:
                defaults.append(rule)
        self._defaults, self._by_home, self._by_device = defaults, by_home, by_device
        self._matched = {}

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

    def known_home(self, device_id: str) -> Hashable:
        """The device's home as last looked up (even if that is older than the time to live),
        without asking the database; a device not looked up yet, or without a home, is a home
        of its own. Safe to call from any thread."""
        hit = self._devices.get(device_id)
        home = hit[0].home_id if hit is not None else None
        return home if home is not None else ("device", device_id)

    def applicable(
        self, conn: psycopg.Connection, device_id: str, sensor_id: str, home_id: int | None
    ) -> list[Rule]:
        self.rules(conn)
        return self.match(device_id, sensor_id, home_id)

    def match(self, device_id: str, sensor_id: str, home_id: int | None) -> list[Rule]:
        """:func:`applicable` on the rules already loaded (no database)."""
        key = (device_id, sensor_id, home_id)
        hit = self._matched.get(key)
        if hit is None:
            candidates = [
                *self._defaults,
                *(self._by_home.get(home_id, []) if home_id is not None else []),
                *self._by_device.get(device_id, []),
            ]
            hit = self._matched[key] = applicable(candidates, device_id, sensor_id, home_id)
        return hit
