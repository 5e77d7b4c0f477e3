"""Group commit: many batches, one transaction.

Readings from every transport are queued here and written together: ``COPY`` into a temporary
staging table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` into the hypertable, so a
re-delivered batch is harmless. Each batch's ``on_done`` runs only after the commit, which is
when transports acknowledge. A failed commit is retried (with a fresh connection) until it
succeeds or the writer stops; nothing acknowledged is ever lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import psycopg

from collector import metrics
from collector.db.connection import connect
from collector.ingest.work import Work

log = logging.getLogger(__name__)

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staging_readings (
    device_id text, sensor_id text, t_ms bigint, value float8, quality int2, fault text
) ON COMMIT DELETE ROWS
"""
_STAGING_TYPES = ["text", "text", "int8", "float8", "int2", "text"]
_INSERT = """
WITH ins AS (
    INSERT INTO readings (time, device_id, sensor_id, value, quality, fault)
    SELECT timestamptz 'epoch' + t_ms * interval '1 millisecond',
           device_id, sensor_id, value, quality, fault
    FROM staging_readings
    ON CONFLICT DO NOTHING
    RETURNING device_id
)
SELECT device_id, count(*) FROM ins GROUP BY device_id
"""
# Latest reading per sensor by measurement time (not arrival time): a backfill of old readings
# never replaces a newer value.
_SENSORS = """
INSERT INTO sensors AS s (device_id, sensor_id, last_seen, last_time, last_value,
                          last_fault_time, last_fault)
SELECT device_id, sensor_id, now(),
       max(ts) FILTER (WHERE value IS NOT NULL),
       (array_agg(value ORDER BY ts DESC) FILTER (WHERE value IS NOT NULL))[1],
       max(ts) FILTER (WHERE value IS NULL),
       (array_agg(fault ORDER BY ts DESC) FILTER (WHERE value IS NULL))[1]
FROM (SELECT device_id, sensor_id, value, fault,
             timestamptz 'epoch' + t_ms * interval '1 millisecond' AS ts
      FROM staging_readings) r
GROUP BY device_id, sensor_id
ORDER BY device_id, sensor_id  -- one lock order for concurrent writers: no deadlocks
ON CONFLICT (device_id, sensor_id) DO UPDATE SET
    last_seen = excluded.last_seen,
    last_value = CASE WHEN s.last_time IS NULL OR excluded.last_time > s.last_time
                      THEN coalesce(excluded.last_value, s.last_value) ELSE s.last_value END,
    last_time = greatest(s.last_time, excluded.last_time),
    last_fault = CASE WHEN s.last_fault_time IS NULL OR excluded.last_fault_time > s.last_fault_time
                      THEN coalesce(excluded.last_fault, s.last_fault) ELSE s.last_fault END,
    last_fault_time = greatest(s.last_fault_time, excluded.last_fault_time)
"""
_DEVICES = """
INSERT INTO devices AS d (device_id, last_seen, last_boot_id, last_seq)
SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::bigint[])
ON CONFLICT (device_id) DO UPDATE SET
    last_seen = excluded.last_seen,
    last_boot_id = excluded.last_boot_id,
    last_seq = excluded.last_seq
"""
_EVENTS = """
INSERT INTO device_events (time, device_id, sensor_id, kind, value, detail)
VALUES (timestamptz 'epoch' + %s * interval '1 millisecond', %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
_REJECTS = (
    "COPY ingest_rejects (device_id, transport, reason, detail, record_index, raw) FROM STDIN"
)


class GroupCommitWriter:
    """A thread that owns one database connection and commits queued work in groups."""

    def __init__(
        self,
        database_url: str,
        *,
        max_readings: int = 50_000,
        max_wait_s: float = 0.05,
        queue_max_readings: int = 500_000,
        threads: int = 2,
    ) -> None:
        self._url = database_url
        self._max_readings = max_readings
        self._max_wait_s = max_wait_s
        self._min_group = max(1, max_readings // 20)
        self._queue: queue.Queue[Work] = queue.Queue()
        self._queue_max = queue_max_readings
        self._pending = 0  # readings queued or being written
        self._room = threading.Condition()
        self._stop = threading.Event()
        # Each thread commits its own groups on its own connection, so PostgreSQL can work on
        # one group while the next is being copied in.
        self._threads = [
            threading.Thread(target=self._run, name=f"group-commit-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        self._local = threading.local()
        self._listeners: list[Callable[[list[Work]], None]] = []
        self.healthy = threading.Event()

    def add_commit_listener(self, listener: Callable[[list[Work]], None]) -> None:
        """Call ``listener(group)`` on the writer thread after each commit (e.g. alert rules).

        Listeners must be quick or hand the work to their own thread: they delay the next commit.
        """
        self._listeners.append(listener)

    # -- producer side -------------------------------------------------------------------------

    def submit(self, work: Work, *, block: bool = True) -> bool:
        """Queue work. When more than ``queue_max_readings`` wait for commit, either wait for
        room (``block``: MQTT, whose broker then holds the rest) or return False (HTTP and CoAP
        answer "try later")."""
        size = len(work.rows)
        with self._room:
            if self._pending + size > self._queue_max and self._pending > 0:
                if not block:
                    return False
                self._room.wait_for(
                    lambda: (
                        self._pending + size <= self._queue_max
                        or self._pending == 0
                        or self._stop.is_set()
                    )
                )
            self._pending += size
            metrics.QUEUE_READINGS.set(self._pending)
        self._queue.put(work)
        return True

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after committing what is queued (within the timeout)."""
        self._stop.set()
        with self._room:
            self._room.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- the writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            group = [first]
            count = len(first.rows)
            # Take whatever is already queued. Only a small group waits (up to max_wait) for
            # company; under load the next group fills while this one commits, so waiting
            # would only leave the database idle.
            deadline = time.monotonic() + self._max_wait_s
            while count < self._max_readings:
                try:
                    work = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if count >= self._min_group or remaining <= 0:
                        break
                    try:
                        work = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                group.append(work)
                count += len(work.rows)
            self._commit_until_done(group, count)
        self._close()

    def _commit_until_done(self, group: list[Work], count: int) -> None:
        delay = 0.1
        while True:
            try:
                started = time.perf_counter()
                self._commit(group)
                metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
                metrics.COMMIT_READINGS.observe(count)
                self.healthy.set()
                break
            except psycopg.Error as exc:
                metrics.DB_ERRORS.inc()
                self.healthy.clear()
                log.warning(
                    "commit of %d readings failed, retrying in %.1fs: %s",
                    count,
                    delay,
                    str(exc).strip(),
                )
                self._close()
                if self._stop.wait(delay):
                    # Stopping with the database down: give up. Nothing was acknowledged, so
                    # the senders re-deliver these batches after the restart.
                    return
                delay = min(delay * 2, 5.0)
        with self._room:
            self._pending -= sum(len(w.rows) for w in group)
            metrics.QUEUE_READINGS.set(self._pending)
            self._room.notify_all()
        for listener in self._listeners:
            try:
                listener(group)
            except Exception:  # a listener's bug must not stop ingest
                log.exception("commit listener failed")
        for work in group:
            if work.on_done is not None:
                try:
                    work.on_done(work.outcome)
                except Exception:  # one transport's failure to ack must not stop the writer
                    log.exception("acknowledging a batch failed")

    def _close(self) -> None:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            finally:
                self._local.conn = None

    def _connection(self) -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = connect(self._url)
            conn.execute(_STAGING)
            conn.commit()
            self._local.conn = conn
        return conn

    def _commit(self, group: list[Work]) -> None:
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(
                "COPY staging_readings (device_id, sensor_id, t_ms, value, quality, fault) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(_STAGING_TYPES)
                write = copy.write_row
                for work in group:
                    for row in work.rows:
                        write(row)
            inserted: dict[str, int] = dict(cur.execute(_INSERT).fetchall())
            self._write_devices(cur, group)
            cur.execute(_SENSORS)
            events = [
                (e.time_ms, w.outcome.device_id, e.sensor_id, e.kind, e.value, e.detail)
                for w in group
                for e in w.events
            ]
            if events:
                cur.executemany(_EVENTS, events)
            if any(w.rejects for w in group):
                with cur.copy(_REJECTS) as copy:
                    for work in group:
                        for rej in work.rejects:
                            copy.write_row(
                                (
                                    rej.device_id,
                                    work.transport,
                                    rej.reason,
                                    rej.detail,
                                    rej.record_index,
                                    rej.raw,
                                )
                            )
        self._attribute(group, inserted)

    @staticmethod
    def _write_devices(cur: psycopg.Cursor, group: list[Work]) -> None:
        latest: dict[str, tuple[str, int]] = {}
        for work in group:
            o = work.outcome
            if o.device_id is not None and o.boot_id is not None and o.seq is not None:
                latest[o.device_id] = (o.boot_id, o.seq)
        if not latest:
            return
        now = cur.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        ids = sorted(latest)  # one lock order for concurrent writers
        cur.execute(
            _DEVICES,
            (ids, [now] * len(ids), [latest[d][0] for d in ids], [latest[d][1] for d in ids]),
        )

    @staticmethod
    def _attribute(group: list[Work], inserted: dict[str, int]) -> None:
        """Split each device's newly inserted count over its batches in this group, in order.

        Exact when a group holds one batch of a device (the usual case); with several, the
        duplicates are attributed to the latest batches, which is where re-sends come from.
        """
        left = defaultdict(int, inserted)
        per_transport: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for work in group:
            o = work.outcome
            n = len(work.rows)
            stored = min(n, left[o.device_id or ""])
            left[o.device_id or ""] -= stored
            o.stored, o.duplicates = stored, n - stored
            o.rejected = len(work.rejects)
            per_transport[work.transport][0] += stored
            per_transport[work.transport][1] += n - stored
            for rej in work.rejects:
                metrics.REJECTS.labels(rej.reason).inc()
        for transport, (stored, dups) in per_transport.items():
            metrics.READINGS_STORED.labels(transport).inc(stored)
            metrics.READINGS_DUPLICATE.labels(transport).inc(dups)
