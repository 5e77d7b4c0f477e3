"""The durable spool: SQLite in WAL mode between sampling and forwarding.

Readings enter in small transactions and leave only when the collector acknowledges the batch
that carried them (its ack is sent after its database commit), so a crash or power cut at any
point loses nothing that was committed here. ``synchronous=NORMAL`` (the default) survives any
crash of the agent; a power cut may lose the last transactions before the WAL was synced.
``FULL`` syncs on every commit and survives power loss, at the cost of SD-card wear.

Batches are ranges of row ids: a batch is assigned the oldest pending rows, gets the next value
of a persisted sequence number and remembers the ``boot`` id it was first sent under. A batch
that was not acknowledged before a restart is sent again with the same ``(boot, seq)`` and the
same rows, so it encodes to the same bytes; the collector also deduplicates on (device, sensor,
time), so a repeat is harmless either way.

Size and age are bounded with an explicit drop-oldest policy: only rows not yet in a batch are
dropped (rows in a sent batch may already be stored upstream, and counting them as dropped would
make the count wrong). Every drop is counted in ``dropped_total``, reported in status messages.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.validate import Reading
from shared import protocol

log = logging.getLogger(__name__)

KIND_READINGS = "readings"
KIND_EVENTS = "events"
# Offsets from t0 must stay within what decoders accept (a day); keep a margin.
_MAX_SPAN_MS = 23 * 3600 * 1000
_MAX_EVENTS_KEPT = 10_000
_UNSYNCED = protocol.Q_CLOCK_UNSYNCED

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    value REAL,
    quality INTEGER NOT NULL,
    fault TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value REAL,
    detail REAL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    boot TEXT NOT NULL,
    kind TEXT NOT NULL,
    t0 INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class EventRow:
    """A detector event waiting to be sent (the fields of a protocol ``ev`` record)."""

    sensor_id: str
    time_ms: int
    kind: str
    value: float | None
    detail: float | None


@dataclass(frozen=True, slots=True)
class Batch:
    """A range of spooled rows sent under one ``(boot, seq)``."""

    seq: int
    boot: str
    kind: str
    t0: int
    first_id: int
    last_id: int
    count: int


class Spool:
    """One SQLite file; use it from one thread (the agent's main loop)."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_readings: int = 2_000_000,
        max_age_s: float = 30 * 86400,
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_readings = max_readings
        self.max_age_s = max_age_s
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        self.rows = self._scalar("SELECT count(*) FROM readings")
        self.pending = self._scalar(
            "SELECT count(*) FROM readings WHERE id > ?", (self._upto(KIND_READINGS),)
        )
        self.dropped_total = int(self.get_meta("dropped_total", 0))

    # -- helpers ------------------------------------------------------------------------------

    def _scalar(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        row = self.db.execute(sql, args).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def _set_meta(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, separators=(",", ":"))),
        )

    def set_meta(self, items: dict[str, Any]) -> None:
        with self._transaction():
            for key, value in items.items():
                self._set_meta(key, value)

    def _upto(self, kind: str) -> int:
        return int(self.get_meta(f"{kind}_assigned_upto", 0))

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    # -- writing --------------------------------------------------------------------------------

    def add(
        self,
        readings: Iterable[Reading],
        events: Iterable[EventRow] = (),
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Store readings, events and state updates in one transaction; returns readings added."""
        rows = [tuple(r) for r in readings]
        ev_rows = [(e.sensor_id, e.time_ms, e.kind, e.value, e.detail) for e in events]
        with self._transaction():
            if rows:
                self.db.executemany(
                    "INSERT INTO readings (sensor_id, time_ms, value, quality, fault) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            if ev_rows:
                self.db.executemany(
                    "INSERT INTO events (sensor_id, time_ms, kind, value, detail) "
                    "VALUES (?, ?, ?, ?, ?)",
                    ev_rows,
                )
            for key, value in (meta or {}).items():
                self._set_meta(key, value)
        self.rows += len(rows)
        self.pending += len(rows)
        return len(rows)

    def enforce_limits(self, now_ms: int) -> int:
        """Drop the oldest unsent readings beyond the size or age limit; returns how many."""
        upto = self._upto(KIND_READINGS)
        dropped = 0
        with self._transaction():
            if self.pending:
                cutoff = now_ms - int(self.max_age_s * 1000)
                # Times taken with an unsynchronised clock say nothing about age: keep those.
                cur = self.db.execute(
                    "DELETE FROM readings WHERE id > ? AND time_ms < ? AND (quality & ?) = 0",
                    (upto, cutoff, _UNSYNCED),
                )
                dropped += cur.rowcount
            excess = min(self.rows - dropped - self.max_readings, self.pending - dropped)
            if excess > 0:
                cur = self.db.execute(
                    "DELETE FROM readings WHERE id IN "
                    "(SELECT id FROM readings WHERE id > ? ORDER BY id LIMIT ?)",
                    (upto, excess),
                )
                dropped += cur.rowcount
            events = self._scalar("SELECT count(*) FROM events")
            if events > _MAX_EVENTS_KEPT:
                self.db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id > ? "
                    "ORDER BY id LIMIT ?)",
                    (self._upto(KIND_EVENTS), events - _MAX_EVENTS_KEPT),
                )
            if dropped:
                self._set_meta("dropped_total", self.dropped_total + dropped)
        if dropped:
            self.dropped_total += dropped
            self.rows -= dropped
            self.pending -= dropped
            log.warning(
                "spool full: dropped the %d oldest unsent readings (%d in total)",
                dropped,
                self.dropped_total,
            )
        return dropped

    # -- batches ------------------------------------------------------------------------------

    def pending_events(self) -> int:
        return self._scalar("SELECT count(*) FROM events WHERE id > ?", (self._upto(KIND_EVENTS),))

    def next_batch(self, kind: str, boot: str, max_items: int) -> Batch | None:
        """Assign the oldest pending rows of ``kind`` to a new batch, or ``None`` if none wait."""
        table = "events" if kind == KIND_EVENTS else "readings"
        upto = self._upto(kind)
        rows = self.db.execute(
            f"SELECT id, time_ms FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
            (upto, max_items),
        ).fetchall()
        if not rows:
            return None
        t0 = max(rows[0][1], 0) // 1000
        last = 0
        for i, (_, time_ms) in enumerate(rows):
            if abs(time_ms - t0 * 1000) > _MAX_SPAN_MS:
                break
            last = i
        rows = rows[: last + 1]
        seq = int(self.get_meta("next_seq", 1))
        batch = Batch(seq, boot, kind, t0, rows[0][0], rows[-1][0], len(rows))
        with self._transaction():
            self.db.execute(
                "INSERT INTO batches (seq, boot, kind, t0, first_id, last_id, count) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, boot, kind, t0, batch.first_id, batch.last_id, batch.count),
            )
            self._set_meta("next_seq", seq + 1)
            self._set_meta(f"{kind}_assigned_upto", batch.last_id)
        if kind == KIND_READINGS:
            self.pending -= batch.count
        return batch

    def unacked(self) -> list[Batch]:
        """Batches sent but not acknowledged, oldest first."""
        rows = self.db.execute(
            "SELECT seq, boot, kind, t0, first_id, last_id, count FROM batches ORDER BY seq"
        ).fetchall()
        return [Batch(*row) for row in rows]

    def encode(self, device_id: str, batch: Batch) -> bytes:
        """The protocol bytes of a batch (the same bytes every time it is encoded)."""
        base = batch.t0 * 1000
        if batch.kind == KIND_EVENTS:
            events = [
                (s, t - base, k, v, d)
                for s, t, k, v, d in self.db.execute(
                    "SELECT sensor_id, time_ms, kind, value, detail FROM events "
                    "WHERE id BETWEEN ? AND ? ORDER BY id",
                    (batch.first_id, batch.last_id),
                )
            ]
            return protocol.encode_batch(device_id, batch.seq, batch.boot, batch.t0, [], events)
        readings = [
            (s, t - base, v, q, f)
            for s, t, v, q, f in self.db.execute(
                "SELECT sensor_id, time_ms, value, quality, fault FROM readings "
                "WHERE id BETWEEN ? AND ? ORDER BY id",
                (batch.first_id, batch.last_id),
            )
        ]
        return protocol.encode_batch(device_id, batch.seq, batch.boot, batch.t0, readings)

    def ack(self, boot: str, seq: int, now_ms: int) -> Batch | None:
        """Remove an acknowledged batch and its rows; ``None`` for an unknown or repeated ack."""
        row = self.db.execute(
            "SELECT seq, boot, kind, t0, first_id, last_id, count FROM batches "
            "WHERE seq = ? AND boot = ?",
            (seq, boot),
        ).fetchone()
        if row is None:
            return None
        batch = Batch(*row)
        table = "events" if batch.kind == KIND_EVENTS else "readings"
        with self._transaction():
            cur = self.db.execute(
                f"DELETE FROM {table} WHERE id BETWEEN ? AND ?", (batch.first_id, batch.last_id)
            )
            self.db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            self._set_meta("last_ack", {"seq": seq, "boot": boot, "time_ms": now_ms})
        if table == "readings":
            self.rows -= cur.rowcount
        return batch

    def stats(self) -> dict[str, Any]:
        """Depth, drops and the last ack, for status messages and ``thermowatch edge status``."""
        return {
            "spool_readings": self.rows,
            "spool_pending": self.pending,
            "spool_events": self._scalar("SELECT count(*) FROM events"),
            "unacked_batches": self._scalar("SELECT count(*) FROM batches"),
            "dropped_total": self.dropped_total,
            "next_seq": int(self.get_meta("next_seq", 1)),
            "last_ack": self.get_meta("last_ack"),
        }

    def close(self) -> None:
        self.db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
