"""The outbox drainer: delivers queued alert notifications, with retries and backoff.

Every collector instance drains; ``FOR UPDATE SKIP LOCKED`` hands each queued row to exactly one
of them, and the row stays locked while it is being sent, so no two instances send it. A row is
marked sent in the same transaction that locked it; if the instance dies mid-send, the
transaction rolls back and the row is sent again later (at least once: receivers can drop the
repeat by its ``X-Thermowatch-Delivery`` id). Failures back off exponentially up to
``max_attempts``, then the row is marked failed with its last error.

Due rows of one target go out as one message (grouping per home). A target's quiet hours hold
back everything below critical until they end.

The target's secrets are decrypted here, just before sending (notify/secrets.py), and each
notifier checks the destination's addresses again before it connects (notify/destinations.py).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from collector.db.connection import connect
from collector.notify.base import Delivery, NotifyError, notifier_class
from collector.notify.secrets import SecretError, box_for, open_config

log = logging.getLogger(__name__)

_DUE = """
SELECT o.id, o.target_id, o.payload, o.attempts,
       t.name, t.kind, t.config, t.home_id, t.quiet_start, t.quiet_end, t.quiet_tz,
       t.private_ok
FROM alert_outbox o JOIN notify_targets t ON t.id = o.target_id
WHERE o.status = 'queued' AND o.next_attempt_at <= now()
  AND o.created_at <= now() - t.group_wait_s * interval '1 second'
ORDER BY o.target_id, o.id
LIMIT %s
FOR UPDATE OF o SKIP LOCKED
"""


def quiet_until(
    now: datetime, start: dtime | None, end: dtime | None, tz_name: str
) -> datetime | None:
    """The end of the quiet period ``now`` falls in, or None when it is not quiet.
    Periods may wrap midnight (22:00-07:00)."""
    if start is None or end is None or start == end:
        return None
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    end_local = datetime.combine(local.date(), end, tz)
    if end_local <= local:
        end_local += timedelta(days=1)
    return end_local.astimezone(UTC)


class OutboxDrainer:
    """Drains the outbox every ``poll_interval_s`` on its own thread (see module docstring)."""

    def __init__(
        self,
        database_url: str,
        *,
        poll_interval_s: float = 1.0,
        max_attempts: int = 10,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 600.0,
        batch: int = 200,
        clock: Callable[[], float] = time.time,
        secret_key: str | None = None,
        allow_private_targets: bool = False,
    ) -> None:
        self._url = database_url
        self._box = box_for(secret_key) if secret_key else None
        # Installations next to their users' brokers allow private destinations for everyone.
        self.allow_private_targets = allow_private_targets
        self.poll_interval_s = poll_interval_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.batch = batch
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-outbox", daemon=True)
        self._conn: psycopg.Connection | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self._conn is not None:
            self._conn.close()

    def wake(self) -> None:
        """Drain now instead of at the next poll (called when alerts change)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self._url, autocommit=True)
                while self.drain_once(self._conn) and not self._stop.is_set():
                    pass
            except Exception:
                log.exception("draining the notification outbox failed")
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()

    def backoff_s(self, attempts: int) -> float:
        """Delay before attempt ``attempts + 1``: base·2^(attempts-1), capped, with 10 % jitter
        so that many failed rows do not all retry in the same second."""
        delay = min(self.backoff_base_s * 2 ** max(0, attempts - 1), self.backoff_max_s)
        return delay * (1 + 0.1 * random.random())

    def drain_once(self, conn: psycopg.Connection) -> int:
        """Send what is due now; returns the number of deliveries attempted."""
        with conn.transaction(), conn.cursor() as cur:
            rows = cur.execute(_DUE, (self.batch,)).fetchall()
            if not rows:
                return 0
            by_target: dict[int, list[Any]] = defaultdict(list)
            for row in rows:
                by_target[row[1]].append(row)
            now = datetime.fromtimestamp(self._clock(), UTC)
            for target_rows in by_target.values():
                self._deliver(cur, target_rows, now)
            return len(by_target)

    def _deliver(self, cur: psycopg.Cursor, rows: list[Any], now: datetime) -> None:
        first = rows[0]
        target_id, name, kind, config, home_id = first[1], first[4], first[5], first[6], first[7]
        held_until = quiet_until(now, first[8], first[9], first[10])
        if held_until is not None:
            held = [r[0] for r in rows if r[2].get("severity") != "critical"]
            if held:
                cur.execute(
                    "UPDATE alert_outbox SET next_attempt_at = %s WHERE id = ANY(%s)",
                    (held_until, held),
                )
            rows = [r for r in rows if r[2].get("severity") == "critical"]
            if not rows:
                return
        ids = [r[0] for r in rows]
        try:
            opened = open_config(self._box, kind, config or {})
        except (SecretError, NotifyError) as exc:
            error = f"the target's stored secrets cannot be used ({exc}); enter them again"
            self._failed(cur, rows, error, False)
            log.warning("notification to %s (%s) failed: %s", name, kind, error)
            return
        delivery = Delivery(
            delivery_id="-".join(str(i) for i in ids),
            target_id=target_id,
            target_name=name,
            home_id=home_id,
            config=opened,
            items=[r[2] for r in rows],
            allow_private=bool(first[11]) or self.allow_private_targets,
        )
        try:
            notifier_class(kind)().send(delivery)
        except NotifyError as exc:
            self._failed(cur, rows, str(exc), exc.retryable)
            log.warning("notification to %s (%s) failed: %s", name, kind, exc)
            return
        except Exception as exc:  # a notifier bug counts as a failed attempt, not a crash
            log.exception("notifier %s failed", kind)
            self._failed(cur, rows, f"{type(exc).__name__}: {exc}", True)
            return
        cur.execute(
            "UPDATE alert_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1, "
            "last_error = NULL WHERE id = ANY(%s)",
            (ids,),
        )

    def _failed(self, cur: psycopg.Cursor, rows: list[Any], error: str, retryable: bool) -> None:
        for row in rows:
            attempts = row[3] + 1
            if retryable and attempts < self.max_attempts:
                cur.execute(
                    "UPDATE alert_outbox SET attempts = %s, last_error = %s, "
                    "next_attempt_at = now() + %s WHERE id = %s",
                    (attempts, error[:1000], timedelta(seconds=self.backoff_s(attempts)), row[0]),
                )
            else:
                cur.execute(
                    "UPDATE alert_outbox SET attempts = %s, last_error = %s, status = 'failed' "
                    "WHERE id = %s",
                    (attempts, error[:1000], row[0]),
                )
