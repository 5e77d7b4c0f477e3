"""Group commit: many batches, one transaction.

Readings from every transport are queued here and written together: ``COPY`` into a temporary
staging table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` into the hypertable, so a
re-delivered batch is harmless. Each batch's ``on_done`` runs only after the commit, which is
when transports acknowledge.

A commit can fail for two kinds of reasons. A transient one (the connection was lost, a
serialization failure or deadlock, the server shutting down) goes away: the group is retried on a
fresh connection until it succeeds or the writer stops, so nothing acknowledged is ever lost. A
permanent one comes from the content (a value the database cannot hold): retrying would wedge the
writer for every device, so the group is bisected until the batch to blame is alone, that batch
is *quarantined* (stored whole in ``ingest_rejects`` with reason ``quarantined``, its sender
answered) and the rest of the group commits.
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
from collector.ingest.work import QUARANTINED, Work

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
    "COPY ingest_rejects (device_id, transport, reason, detail, record_index, raw) "
    "FROM STDIN (FORMAT BINARY)"
)
_REJECTS_TYPES = ["text", "text", "text", "text", "int4", "bytea"]
_QUARANTINE = """
INSERT INTO ingest_rejects (device_id, transport, reason, detail, record_index, raw)
VALUES (%s, %s, %s, %s, %s, %s)
"""
_BIGINT = range(-(2**63), 2**63)
# Text columns of ingest_rejects are capped: the btree index on device_id refuses long keys, and a
# reject must be storable whatever the device sent.
_DEVICE_ID_MAX = 256
_DETAIL_MAX = 1000

# SQLSTATE classes that say nothing about the content: retrying the same group can succeed.
# 08 connection exception, 40 transaction rollback (serialization failure, deadlock), 53
# insufficient resources, 55 object not in prerequisite state (lock not available), 57 operator
# intervention (admin shutdown, cannot connect now, statement timeout), 58 system error (I/O).
# Class 54 (program limit exceeded, e.g. a key too long for an index) is an OperationalError too
# but comes from the content, so it counts as permanent.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
# A standby being promoted refuses writes for a moment.
_TRANSIENT_STATES = frozenset({"25006"})


def is_transient(exc: BaseException, conn: psycopg.Connection | None = None) -> bool:
    """True when the same write may succeed if retried (the connection or the server's state
    failed), False when the content is refused and retrying would fail again."""
    if not isinstance(exc, psycopg.Error):
        # Raised by the client before sending: a value it cannot encode (an int beyond int8, a
        # lone surrogate in text) is content.
        return False
    if conn is not None and (conn.closed or conn.broken):
        return True
    if isinstance(exc, psycopg.InterfaceError):
        return True
    state = exc.sqlstate
    if state is None:
        # Raised by the client: a lost connection is an OperationalError; a value it refuses to
        # send (a NUL in a text field) is a DataError.
        return isinstance(exc, psycopg.OperationalError)
    return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES


class Unstorable(ValueError):
    """Content the database cannot hold, found before sending it (e.g. a seq beyond bigint)."""


class GroupCommitWriter:
    """Threads that each own one database connection and commit queued work in groups."""

    def __init__(
        self,
        database_url: str,
        *,
        max_readings: int = 50_000,
        max_wait_s: float = 0.05,
        queue_max_readings: int = 500_000,
        threads: int = 2,
        stall_s: float = 30.0,
        raw_max_bytes: int = 4096,
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
        self._started = False
        self._local = threading.local()
        self._listeners: list[Callable[[list[Work]], None]] = []
        self._stall_s = stall_s
        self._raw_max = raw_max_bytes
        # Per writer thread holding a group: when it last committed something (or took the
        # group). Read by readiness: a thread that holds work and commits nothing is stalled.
        self._progress: dict[int, float] = {}
        self._progress_lock = threading.Lock()
        self._quarantine_logged_at = -_QUARANTINE_LOG_INTERVAL_S
        self.healthy = threading.Event()

    def add_commit_listener(self, listener: Callable[[list[Work]], None]) -> None:
        """Call ``listener(group)`` on the writer thread after each commit (e.g. alert rules).

        The group holds the batches whose readings were committed (never quarantined ones).
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
        self._started = True
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

    def stalled(self) -> str | None:
        """Why the writer is not keeping up (for ``/readyz``), or None when it is: a thread has
        held work for more than ``stall_s`` without committing any of it, or a thread is gone."""
        if (
            self._started
            and not self._stop.is_set()
            and not all(thread.is_alive() for thread in self._threads)
        ):
            return "a writer thread has stopped"
        now = time.monotonic()
        with self._progress_lock:
            waited = max((now - t for t in self._progress.values()), default=0.0)
        if waited > self._stall_s:
            return f"work waiting and nothing committed for {waited:.0f} s"
        return None

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
            try:
                self._commit_until_done(group)
            except Exception:  # a bug here must not end the thread: the others would wait
                log.exception("the writer failed on a group of %d batches", len(group))
        self._close()

    def _mark_progress(self) -> None:
        with self._progress_lock:
            self._progress[threading.get_ident()] = time.monotonic()

    def _commit_until_done(self, group: list[Work]) -> None:
        """Commit the group; bisect it around content the database refuses, quarantine the
        batches to blame; retry transient failures. Then acknowledge what was done."""
        self._mark_progress()
        done: set[int] = set()  # id() of each batch committed or quarantined
        quarantined: set[int] = set()
        todo = [group]
        delay = 0.1
        probed = False  # a write without content succeeded since the last transient failure
        try:
            while todo:
                part = todo.pop()
                try:
                    self._commit_part(part)
                except Exception as exc:
                    transient = self._transient(exc)
                    if not transient and not probed and _from_server(exc):
                        # Before blaming the content: does a write without any fail too (a
                        # schema change, permissions)? Then quarantining would refuse every
                        # batch; retry instead, as for a transient failure.
                        probed = self._database_takes_writes()
                        transient = not probed
                    if transient:
                        probed = False
                        if not self._backoff(delay, exc, sum(len(w.rows) for w in part)):
                            return  # stopping: the rest is not acknowledged and is re-sent
                        delay = min(delay * 2, 5.0)
                        todo.append(part)
                        continue
                    if len(part) > 1:
                        # Commit the halves separately: the good part of the group commits, the
                        # content to blame ends up alone.
                        mid = len(part) // 2
                        todo += (part[mid:], part[:mid])
                        continue
                    if not self._quarantine(part[0], exc):
                        return
                    quarantined.add(id(part[0]))
                delay = 0.1
                done.update(id(w) for w in part)
                self._mark_progress()
        finally:
            with self._progress_lock:
                self._progress.pop(threading.get_ident(), None)
            with self._room:
                self._pending -= sum(len(w.rows) for w in group)
                metrics.QUEUE_READINGS.set(self._pending)
                self._room.notify_all()
            self._finish([w for w in group if id(w) in done], quarantined)

    def _finish(self, finished: list[Work], quarantined: set[int]) -> None:
        committed = [w for w in finished if id(w) not in quarantined]
        if committed:
            for listener in self._listeners:
                try:
                    listener(committed)
                except Exception:  # a listener's bug must not stop ingest
                    log.exception("commit listener failed")
        for work in finished:
            if work.on_done is not None:
                try:
                    work.on_done(work.outcome)
                except Exception:  # one transport's failure to ack must not stop the writer
                    log.exception("acknowledging a batch failed")

    def _commit_part(self, part: list[Work]) -> None:
        started = time.perf_counter()
        self._commit(part)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.COMMIT_READINGS.observe(sum(len(w.rows) for w in part))
        self.healthy.set()

    def _backoff(self, delay: float, exc: BaseException, count: int) -> bool:
        """After a transient failure: wait ``delay`` on a fresh connection; False if stopping."""
        metrics.DB_ERRORS.inc()
        self.healthy.clear()
        log.warning(
            "commit of %d readings failed, retrying in %.1fs: %s",
            count,
            delay,
            _one_line(exc),
        )
        self._close()
        # Stopping with the database down: give up. Nothing unfinished was acknowledged, so the
        # senders re-deliver those batches after the restart.
        return not self._stop.wait(delay)

    def _transient(self, exc: BaseException) -> bool:
        """Classify a failed transaction (see :func:`is_transient`), and close the connection
        if the failure left it unfit for the next one."""
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        transient = is_transient(exc, conn)
        if (
            conn is not None
            and not conn.closed
            and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            self._close()
        return transient

    def _database_takes_writes(self) -> bool:
        """Whether a write like ours without any device content succeeds (rolled back), so that
        the server's refusal of a group is its content's fault."""
        try:
            conn = self._connection()
            with conn.transaction(force_rollback=True), conn.cursor() as cur:
                cur.execute(_INSERT)  # the staging table is empty
                cur.execute(_SENSORS)
                cur.execute(_DEVICES, ([], [], [], []))
                cur.execute(_EVENTS, (0, "", "", "", None, None))
                cur.execute(_QUARANTINE, (None, "", "", None, None, b""))
        except Exception as probe:
            if not self._transient(probe):
                log.error(
                    "the database refuses writes without device content: %s", _one_line(probe)
                )
            return False
        return True

    def _quarantine(self, work: Work, exc: BaseException) -> bool:
        """Store the batch whole as a reject instead of its records, and answer its sender with
        the error ``quarantined``. False only when stopping with the database unreachable."""
        o = work.outcome
        device = o.device_id or next((r.device_id for r in work.rejects if r.device_id), None)
        # A refused batch keeps its payload in its reject.
        raw: bytes | str | None = work.raw
        if raw is None:
            raw = next((r.raw for r in work.rejects if r.raw is not None), None)
        reason = f"{type(exc).__name__}: {_one_line(exc)}"
        candidates = [
            (
                _text(device, _DEVICE_ID_MAX),
                work.transport,
                QUARANTINED,
                _text(reason, _DETAIL_MAX),
                None,
                _raw(raw, self._raw_max),
            ),
            # If even that is refused: what cannot fail, so the sender still gets its answer.
            (
                _ascii(device, 64),
                _ascii(work.transport, 32),
                QUARANTINED,
                type(exc).__name__,
                None,
                None,
            ),
        ]
        stored = False
        delay = 0.1
        for row in candidates:
            while True:
                try:
                    conn = self._connection()
                    with conn.transaction():
                        conn.execute(_QUARANTINE, row)
                    stored = True
                except Exception as failure:
                    if self._transient(failure):
                        if not self._backoff(delay, failure, 0):
                            return False
                        delay = min(delay * 2, 5.0)
                        continue
                    log.error("could not store a quarantined batch: %s", _one_line(failure))
                break
            if stored:
                break
        o.error = QUARANTINED
        o.stored = o.duplicates = 0
        o.rejected = max(1, len(work.rows) + len(work.events) + len(work.rejects))
        metrics.QUARANTINED.labels(work.transport).inc()
        if stored:
            metrics.REJECTS.labels(QUARANTINED).inc()
        else:
            metrics.QUARANTINE_LOST.inc()
        now = time.monotonic()
        if now - self._quarantine_logged_at >= _QUARANTINE_LOG_INTERVAL_S:
            # At most once a minute: a device sending the same payload in a loop must not fill
            # the log (the counter has them all).
            self._quarantine_logged_at = now
            log.warning(
                "quarantined a %s batch from %r that the database refused: %s",
                work.transport,
                _text(device, _DEVICE_ID_MAX),
                _text(reason, _DETAIL_MAX),
            )
        return True

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
        # Checked before anything is sent, so that bisecting around such a batch costs nothing.
        devices = self._device_updates(group)
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
            self._write_devices(cur, devices)
            cur.execute(_SENSORS)
            events = [
                (e.time_ms, w.outcome.device_id, e.sensor_id, e.kind, e.value, e.detail)
                for w in group
                for e in w.events
            ]
            if events:
                cur.executemany(_EVENTS, events)
            if any(w.rejects for w in group):
                raw_max = self._raw_max
                with cur.copy(_REJECTS) as copy:
                    copy.set_types(_REJECTS_TYPES)
                    for work in group:
                        for rej in work.rejects:
                            # Device content in text columns: a NUL would make the whole group
                            # fail (text cannot hold it); raw keeps every byte.
                            copy.write_row(
                                (
                                    _text(rej.device_id, _DEVICE_ID_MAX),
                                    work.transport,
                                    _text(rej.reason, _DETAIL_MAX),
                                    _text(rej.detail, _DETAIL_MAX),
                                    rej.record_index,
                                    _raw(rej.raw, raw_max),
                                )
                            )
        self._attribute(group, inserted)

    @staticmethod
    def _device_updates(group: list[Work]) -> dict[str, tuple[str, int]]:
        """Each device's latest boot id and seq in the group, from the batches it accepted."""
        latest: dict[str, tuple[str, int]] = {}
        for work in group:
            o = work.outcome
            # A refused batch (device_mismatch, unknown_device, ...) changes nothing about the
            # device it names: it must not keep a dead device "online" nor create a device row.
            if o.error is None and o.device_id is not None and o.boot_id is not None:
                if o.seq is None:
                    continue
                if o.seq not in _BIGINT:
                    raise Unstorable(f"seq {o.seq} does not fit a bigint")
                latest[o.device_id] = (o.boot_id, o.seq)
        return latest

    @staticmethod
    def _write_devices(cur: psycopg.Cursor, latest: dict[str, tuple[str, int]]) -> None:
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


_QUARANTINE_LOG_INTERVAL_S = 60.0


def _from_server(exc: BaseException) -> bool:
    """A refusal by the server (errors the client raises before sending are the content's)."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate is not None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _text(value: str | None, limit: int) -> str | None:
    """Device content as text PostgreSQL takes: no NUL (text cannot hold one), valid UTF-8 (no
    lone surrogates), at most ``limit`` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if len(value) > limit:
        value = value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _ascii(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return "".join(c for c in str(value)[:limit] if " " <= c <= "~")


def _raw(raw: bytes | str | None, limit: int) -> bytes | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    return bytes(raw[:limit])
