"""Periodic sweeps for conditions that no reading announces: a sensor gone quiet (stale), a
device offline, and repeated notifications for alerts still firing.

Every collector instance runs the sweeper, but each round runs in a transaction that first takes
``pg_try_advisory_xact_lock``: one instance sweeps, the others skip the round, and if that instance
dies its lock goes with its connection, so another one sweeps the next round.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

import psycopg

from collector.alerts import lifecycle
from collector.alerts.catalog import DEVICE_HOME_SQL, Catalog
from collector.alerts.engine import ensure_states, learned_gap_s
from collector.alerts.evaluate import Transition
from collector.alerts.lifecycle import Key, Lifecycle
from collector.alerts.rules import Kind, Rule, applicable
from collector.db.connection import connect

log = logging.getLogger(__name__)

# Arbitrary but fixed: the advisory lock that elects the sweeping instance for one round.
SWEEP_LOCK_KEY = 0x7477_A1E7

_SENSORS = f"""
SELECT s.device_id, s.sensor_id, s.last_seen, {DEVICE_HOME_SQL}
FROM sensors s JOIN devices d ON d.device_id = s.device_id
"""
_DEVICES = f"""
SELECT d.device_id, d.last_seen, {DEVICE_HOME_SQL}, p.state, p.changed_at
FROM devices d LEFT JOIN device_presence p ON p.device_id = d.device_id
"""
_REPEATS = """
SELECT a.id, t.id
FROM alerts a
JOIN notify_targets t ON t.enabled AND (t.home_id IS NULL OR t.home_id = a.home_id)
WHERE a.state = 'firing' AND a.notified AND t.repeat_interval_s > 0
  AND (a.silenced_until IS NULL OR a.silenced_until <= now())
  AND array_position(ARRAY['info', 'warning', 'critical'], a.severity)
      >= array_position(ARRAY['info', 'warning', 'critical'], t.min_severity)
  AND NOT EXISTS (
      SELECT 1 FROM alert_outbox o
      WHERE o.alert_id = a.id AND o.target_id = t.id AND o.status <> 'cancelled'
        AND o.created_at > now() - t.repeat_interval_s * interval '1 second')
ORDER BY a.id
"""


def allowed_silence_s(rule: Rule, state: dict) -> float:
    """How long a sensor may stay silent: ``missed_intervals`` times its expected interval,
    or times the gap it actually keeps between batches if that is longer (a sleeping board)."""
    expected = float(rule.params.get("expected_interval_s", 60.0))
    learned = learned_gap_s(state)
    if learned is not None:
        expected = max(expected, learned)
    return expected * float(rule.params.get("missed_intervals", 3.0))


class Sweeper:
    """Runs :meth:`sweep` every ``interval_s`` on its own thread."""

    def __init__(
        self,
        database_url: str,
        *,
        interval_s: float = 5.0,
        live_window_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        extra: list[Callable[[psycopg.Connection], None]] | None = None,
        on_changes: Callable[[], None] | None = None,
    ) -> None:
        self._url = database_url
        self._on_changes = on_changes
        self.interval_s = interval_s
        self.live_window_ms = int(live_window_s * 1000)
        self._clock = clock
        self.catalog = Catalog(ttl_s=min(2.0, interval_s))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-sweep", daemon=True)
        self._conn: psycopg.Connection | None = None
        # More leader-only jobs (Home Assistant state sync) run after each successful sweep.
        self.extra = list(extra or [])

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self._url, autocommit=True)
                changes = self.sweep(self._conn)
                if changes is not None:
                    if self._on_changes is not None:
                        self._on_changes()
                    for job in self.extra:
                        job(self._conn)
            except Exception:  # the next round tries again with a fresh connection
                log.exception("alert sweep failed")
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    def sweep(self, conn: psycopg.Connection, *, now_ms: int | None = None) -> int | None:
        """One round; returns the number of alert changes, or None if another instance holds the
        sweep lock. ``conn`` must be in autocommit mode (each round is its own transaction)."""
        now_ms = int(self._clock() * 1000) if now_ms is None else now_ms
        with conn.transaction(), conn.cursor() as cur:
            got = cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK_KEY,)).fetchone()
            if not got or not got[0]:
                return None
            rules = [r for r in self.catalog.rules(conn) if r.kind in (Kind.stale, Kind.offline)]
            lc = Lifecycle(cur, now_ms=now_ms, live_window_ms=self.live_window_ms)
            if rules:
                self._silence(cur, lc, rules, now_ms)
            self._repeats(cur)
            return lc.changes

    def _silence(self, cur: psycopg.Cursor, lc: Lifecycle, rules: list[Rule], now_ms: int) -> None:
        # (key) -> (rule, home, last arrival, presence says offline since)
        watched: dict[Key, tuple[Rule, int | None, datetime | None, datetime | None]] = {}
        stale_rules = [r for r in rules if r.kind is Kind.stale]
        offline_rules = [r for r in rules if r.kind is Kind.offline and r.sensor_id is None]
        if stale_rules:
            for device, sensor, last_seen, home in cur.execute(_SENSORS).fetchall():
                if last_seen is None:
                    continue  # provisioned but never reported: nothing has gone quiet yet
                for rule in applicable(stale_rules, device, sensor, home):
                    if rule.kind is Kind.stale:
                        watched[(rule.id, device, sensor)] = (rule, home, last_seen, None)
        if offline_rules:
            for device, last_seen, home, presence, changed in cur.execute(_DEVICES).fetchall():
                offline_since = changed if presence == "offline" else None
                if last_seen is None and offline_since is None:
                    continue  # registered but never heard from: nothing to compare with
                for rule in applicable(offline_rules, device, "", home):
                    if rule.kind is Kind.offline:
                        watched[(rule.id, device, "")] = (rule, home, last_seen, offline_since)
        if not watched:
            return
        keys = sorted(watched)
        states = ensure_states(cur, keys)
        open_alerts = lifecycle.load_open(cur, keys)
        conn = cur.connection
        conditions: dict[Key, tuple[bool, float, float]] = {}
        for key in keys:
            rule, home, last_seen, offline_since = watched[key]
            allowed = allowed_silence_s(rule, states.get(key, ({}, 0))[0])
            last_ms = lifecycle.ms_of(last_seen)
            silent_s = (now_ms - last_ms) / 1000.0 if last_ms is not None else float("inf")
            said_offline = offline_since is not None and (
                last_seen is None or offline_since >= last_seen
            )
            conditions[key] = (silent_s > allowed or said_offline, silent_s, allowed)
        # A device that is offline explains why its sensors are quiet: one alert, not one per
        # sensor.
        offline_devices = {
            k[1] for k, c in conditions.items() if c[0] and watched[k][0].kind is Kind.offline
        }
        for key in keys:
            rule, home = watched[key][0], watched[key][1]
            condition, silent_s, allowed = conditions[key]
            alert = open_alerts.get(key)
            if condition and alert is None:
                if rule.kind is Kind.stale and key[1] in offline_devices:
                    continue
                shown = silent_s if silent_s != float("inf") else 0.0
                tr = Transition(now_ms, "fire", None, shown, allowed)
            elif not condition and alert is not None:
                tr = Transition(now_ms, "clear", None, None, None)
            else:
                continue
            lc.apply(
                rule,
                key,
                self.catalog.subject(conn, key[1], key[2]),
                home,
                [tr],
                alert,
                latest_ms=now_ms,
            )

    @staticmethod
    def _repeats(cur: psycopg.Cursor) -> None:
        for alert_id, target_id in cur.execute(_REPEATS).fetchall():
            payload = lifecycle.alert_payload(cur, alert_id)
            lifecycle.enqueue(cur, "repeat", payload, only_target=target_id)
