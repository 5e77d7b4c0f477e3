"""The alert lifecycle in PostgreSQL: pending → firing → acknowledged → resolved.

Everything here runs inside the caller's transaction, on a psycopg cursor, after the caller has
locked the (rule, sensor) state row: one open alert per (rule, sensor) is kept by that lock and
by a partial unique index. Each change writes a history row, tells every collector instance
through ``NOTIFY`` (for the live stream) and queues notifications in the outbox, which commits
or rolls back together with the change, so a message is never lost nor sent for a change that
did not happen.

Time: ``started_at``, ``fired_at`` and ``resolved_at`` are measurement times. A transition whose
measurement time is older than the live window is a backfill: recorded, but it sends no "now"
notification unless the condition is still going on when the data catches up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from collector.alerts import messages
from collector.alerts.evaluate import Transition
from collector.alerts.messages import Subject
from collector.alerts.rules import Kind, Rule

CHANNEL = "tw_alerts"
OPEN_STATES = ("pending", "firing", "acknowledged")

Key = tuple[int, str, str]  # (rule_id, device_id, sensor_id)


def at(ms: int | float) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, UTC)


def ms_of(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


@dataclass(slots=True)
class OpenAlert:
    id: int
    state: str
    started_ms: int
    fired_ms: int | None
    notified: bool
    silenced_until: datetime | None
    home_id: int | None
    flap_count: int = 0


_OPEN_COLUMNS = "id, state, started_at, fired_at, notified, silenced_until, home_id, flap_count"


def _open_from_row(row: Any) -> OpenAlert:
    return OpenAlert(
        id=row[0],
        state=row[1],
        started_ms=ms_of(row[2]) or 0,
        fired_ms=ms_of(row[3]),
        notified=row[4],
        silenced_until=row[5],
        home_id=row[6],
        flap_count=row[7],
    )


def load_open(cur: psycopg.Cursor, keys: list[Key]) -> dict[Key, OpenAlert]:
    if not keys:
        return {}
    rows = cur.execute(
        f"SELECT rule_id, device_id, sensor_id, {_OPEN_COLUMNS} FROM alerts "
        "WHERE state <> 'resolved' AND (rule_id, device_id, sensor_id) IN "
        "(SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]))",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    ).fetchall()
    return {(r[0], r[1], r[2]): _open_from_row(r[3:]) for r in rows}


def history(
    cur: psycopg.Cursor,
    alert_id: int,
    from_state: str | None,
    to_state: str,
    *,
    measured_ms: int | None = None,
    value: float | None = None,
    actor: str = "engine",
    note: str | None = None,
) -> None:
    cur.execute(
        "INSERT INTO alert_history (alert_id, measured_at, from_state, to_state, actor, value, "
        "note) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            alert_id,
            at(measured_ms) if measured_ms is not None else None,
            from_state,
            to_state,
            actor,
            value,
            note,
        ),
    )


_PAYLOAD = """
SELECT a.id, a.rule_id, r.name, a.device_id, a.sensor_id, a.home_id, a.kind, a.severity, a.state,
       a.started_at, a.fired_at, a.acknowledged_at, a.resolved_at, a.value, a.threshold,
       a.message, a.backfill, a.flap_count, a.silenced_until
FROM alerts a JOIN alert_rules r ON r.id = a.rule_id WHERE a.id = %s
"""
PAYLOAD_FIELDS = (
    "id",
    "rule_id",
    "rule_name",
    "device_id",
    "sensor_id",
    "home_id",
    "kind",
    "severity",
    "state",
    "started_at",
    "fired_at",
    "acknowledged_at",
    "resolved_at",
    "value",
    "threshold",
    "message",
    "backfill",
    "flap_count",
    "silenced_until",
)


def alert_payload(cur: psycopg.Cursor, alert_id: int) -> dict[str, Any]:
    row = cur.execute(_PAYLOAD, (alert_id,)).fetchone()
    assert row is not None
    out = dict(zip(PAYLOAD_FIELDS, row, strict=True))
    for name, v in out.items():
        if isinstance(v, datetime):
            out[name] = v.isoformat()
    return out


def announce(cur: psycopg.Cursor, event: str, payload: dict[str, Any]) -> None:
    """Tell every instance's live stream (delivered when the transaction commits)."""
    body = dict(payload, event=event)
    text = json.dumps(body, separators=(",", ":"))
    if len(text) > 7000:  # NOTIFY payloads are limited to 8000 bytes
        body["message"] = str(body.get("message", ""))[:500]
        text = json.dumps(body, separators=(",", ":"))
    cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, text))


_ENQUEUE = """
INSERT INTO alert_outbox (alert_id, target_id, event, payload, next_attempt_at)
SELECT %(alert)s, t.id, %(event)s, %(payload)s, now() + %(delay)s * interval '1 second'
FROM notify_targets t
WHERE t.enabled
  AND (t.home_id IS NULL OR t.home_id = %(home)s)
  AND array_position(ARRAY['info', 'warning', 'critical'], %(severity)s)
      >= array_position(ARRAY['info', 'warning', 'critical'], t.min_severity)
  AND (%(only_target)s::bigint IS NULL OR t.id = %(only_target)s::bigint)
"""


def enqueue(
    cur: psycopg.Cursor,
    event: str,
    payload: dict[str, Any],
    *,
    delay_s: float = 0.0,
    only_target: int | None = None,
) -> int:
    """Queue one notification per matching target (home targets and all-homes targets)."""
    cur.execute(
        _ENQUEUE,
        {
            "alert": payload["id"],
            "event": event,
            "payload": json.dumps(dict(payload, event=event)),
            "delay": delay_s,
            "home": payload["home_id"],
            "severity": payload["severity"],
            "only_target": only_target,
        },
    )
    return cur.rowcount


class Lifecycle:
    """Applies one rule's transitions on one sensor to its alert (see module docstring)."""

    def __init__(self, cur: psycopg.Cursor, *, now_ms: int, live_window_ms: int) -> None:
        self.cur = cur
        self.now_ms = now_ms
        self.live_window_ms = live_window_ms
        self.changes = 0

    def _live(self, t_ms: int) -> bool:
        return t_ms >= self.now_ms - self.live_window_ms

    def _silenced(self, alert: OpenAlert) -> bool:
        return alert.silenced_until is not None and alert.silenced_until > at(self.now_ms)

    def apply(
        self,
        rule: Rule,
        key: Key,
        subject: Subject,
        home_id: int | None,
        transitions: list[Transition],
        alert: OpenAlert | None,
        *,
        latest_ms: int | None = None,
        fault: str | None = None,
    ) -> OpenAlert | None:
        """Apply transitions in order; ``latest_ms`` is the newest measurement time seen for the
        sensor (to tell a caught-up stream from a backfill still in progress)."""
        for tr in transitions:
            if tr.kind == "pending":
                if alert is None:
                    alert = self._open(rule, key, home_id, tr, "pending", subject)
            elif tr.kind == "fire":
                if alert is None:
                    alert = self._open(rule, key, home_id, tr, "firing", subject)
                    self._fired(rule, alert, tr, subject, fault, new=True)
                elif alert.state == "pending":
                    self._fired(rule, alert, tr, subject, fault, new=False)
            elif tr.kind == "cancel":
                if alert is not None and alert.state == "pending":
                    self._resolve(rule, alert, tr, subject, note="cleared before firing")
                    alert = None
            elif tr.kind == "clear" and alert is not None:
                self._resolve(rule, alert, tr, subject, note=None)
                alert = None
        if (
            alert is not None
            and alert.state == "firing"
            and not alert.notified
            and latest_ms is not None
            and self._live(latest_ms)
            and not self._silenced(alert)
        ):
            # It started in a backfill and is still going on now that the data is current.
            self._notify_firing(alert)
        return alert

    # -- steps -----------------------------------------------------------------------------------

    def _open(
        self,
        rule: Rule,
        key: Key,
        home_id: int | None,
        tr: Transition,
        state: str,
        subject: Subject,
    ) -> OpenAlert:
        cur = self.cur
        # A condition back within the flap window re-opens the alert it just resolved.
        row = cur.execute(
            f"SELECT {_OPEN_COLUMNS} FROM alerts WHERE rule_id = %s AND device_id = %s "
            "AND sensor_id = %s AND state = 'resolved' AND resolved_at >= %s "
            "ORDER BY id DESC LIMIT 1 FOR UPDATE",
            (key[0], key[1], key[2], at(tr.t_ms - rule.flap_window_ms)),
        ).fetchone()
        if row is not None:
            alert = _open_from_row(row)
            cancelled = cur.execute(
                "UPDATE alert_outbox SET status = 'cancelled' WHERE alert_id = %s "
                "AND event = 'resolved' AND status = 'queued'",
                (alert.id,),
            ).rowcount
            # If the "resolved" message never went out, people still see it as firing.
            alert.notified = alert.notified and cancelled > 0
            alert.flap_count += 1
            to_state = state
            cur.execute(
                "UPDATE alerts SET state = %s, resolved_at = NULL, flap_count = %s, "
                "notified = %s, updated_at = now() WHERE id = %s",
                (to_state, alert.flap_count, alert.notified, alert.id),
            )
            alert.state = to_state
            history(
                cur,
                alert.id,
                "resolved",
                to_state,
                measured_ms=tr.t_ms,
                value=tr.value,
                note="re-opened within the flap window",
            )
            self._announce(alert.id, "reopened")
            return alert
        new_id = cur.execute(
            "INSERT INTO alerts (rule_id, device_id, sensor_id, home_id, kind, severity, state, "
            "started_at, value, threshold, backfill) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                key[0],
                key[1],
                key[2],
                home_id,
                rule.kind.value,
                rule.severity.value,
                state,
                at(tr.t_ms),
                tr.value,
                tr.limit,
                not self._live(tr.t_ms),
            ),
        ).fetchone()[0]  # type: ignore[index]
        history(cur, new_id, None, state, measured_ms=tr.t_ms, value=tr.value)
        alert = OpenAlert(new_id, state, tr.t_ms, None, False, None, home_id)
        if state == "pending":
            self._announce(new_id, "pending")
        return alert

    def _fired(
        self,
        rule: Rule,
        alert: OpenAlert,
        tr: Transition,
        subject: Subject,
        fault: str | None,
        *,
        new: bool,
    ) -> None:
        for_s = (tr.t_ms - alert.started_ms) / 1000.0
        if rule.kind in (Kind.stale, Kind.offline):
            for_s = tr.observed or for_s
        text = messages.firing(
            rule.kind,
            subject,
            value=tr.value,
            observed=tr.observed,
            limit=tr.limit,
            direction=tr.direction,
            for_s=for_s,
            fault=fault,
        )
        backfill = not self._live(tr.t_ms)
        self.cur.execute(
            "UPDATE alerts SET state = 'firing', fired_at = coalesce(fired_at, %s), value = %s, "
            "threshold = %s, message = %s, backfill = backfill OR %s, updated_at = now() "
            "WHERE id = %s",
            (at(tr.t_ms), tr.value, tr.limit, text, backfill, alert.id),
        )
        if not new:
            history(self.cur, alert.id, "pending", "firing", measured_ms=tr.t_ms, value=tr.value)
        alert.state = "firing"
        alert.fired_ms = alert.fired_ms or tr.t_ms
        self.changes += 1
        if not backfill and not alert.notified and not self._silenced(alert):
            self._notify_firing(alert)
        else:
            self._announce(alert.id, "firing")

    def _notify_firing(self, alert: OpenAlert) -> None:
        payload = alert_payload(self.cur, alert.id)
        enqueue(self.cur, "firing", payload)
        self.cur.execute("UPDATE alerts SET notified = true WHERE id = %s", (alert.id,))
        alert.notified = True
        announce(self.cur, "firing", payload)

    def _resolve(
        self, rule: Rule, alert: OpenAlert, tr: Transition, subject: Subject, *, note: str | None
    ) -> None:
        cur = self.cur
        text = None
        if alert.state != "pending":
            text = messages.resolved(
                rule.kind, subject, value=tr.value, lasted_s=(tr.t_ms - alert.started_ms) / 1000.0
            )
        cur.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = %s, "
            "message = coalesce(%s, message), updated_at = now() WHERE id = %s",
            (at(tr.t_ms), text, alert.id),
        )
        history(
            cur, alert.id, alert.state, "resolved", measured_ms=tr.t_ms, value=tr.value, note=note
        )
        self.changes += 1
        payload = alert_payload(cur, alert.id)
        if alert.notified and not self._silenced(alert):
            # Held back for the flap window: if the condition returns, it is cancelled.
            enqueue(cur, "resolved", payload, delay_s=rule.flap_window_ms / 1000.0)
        announce(cur, "resolved", payload)

    def _announce(self, alert_id: int, event: str) -> None:
        announce(self.cur, event, alert_payload(self.cur, alert_id))


def acknowledge(cur: psycopg.Cursor, alert_id: int, actor: str, note: str | None) -> bool:
    """Firing → acknowledged: stops repeats; the alert still resolves by itself."""
    row = cur.execute(
        "UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = %s, "
        "updated_at = now() WHERE id = %s AND state = 'firing' RETURNING id",
        (actor, alert_id),
    ).fetchone()
    if row is None:
        return False
    history(cur, alert_id, "firing", "acknowledged", actor=actor, note=note)
    announce(cur, "acknowledged", alert_payload(cur, alert_id))
    return True


def silence(
    cur: psycopg.Cursor, alert_id: int, seconds: float, actor: str, note: str | None
) -> bool:
    """No notifications for this alert (repeats, resolved) for ``seconds``."""
    row = cur.execute(
        "UPDATE alerts SET silenced_until = now() + %s, updated_at = now() "
        "WHERE id = %s AND state <> 'resolved' RETURNING state",
        (timedelta(seconds=seconds), alert_id),
    ).fetchone()
    if row is None:
        return False
    history(cur, alert_id, row[0], row[0], actor=actor, note=note or f"silenced for {seconds:g} s")
    cur.execute(
        "UPDATE alert_outbox SET status = 'cancelled' WHERE alert_id = %s AND status = 'queued'",
        (alert_id,),
    )
    announce(cur, "silenced", alert_payload(cur, alert_id))
    return True
