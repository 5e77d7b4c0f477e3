"""The spool keeps readings until the collector's ack, across restarts, within its limits."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from edge.spool import KIND_EVENTS, KIND_READINGS, EventRow, Spool
from edge.validate import Reading
from shared import protocol
from shared.decode import decode_batch

NOW_MS = 1_763_900_000_000


def readings(n: int, start: int = 0, sensor: str = "s1") -> list[Reading]:
    return [Reading(sensor, NOW_MS + (start + i) * 100, 20.0 + i / 16, 0, None) for i in range(n)]


def test_uses_wal_and_the_configured_synchronous_level(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", synchronous="FULL")
    assert spool.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_batch_leaves_the_spool_only_after_its_ack(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.add(readings(10))
    batch = spool.next_batch(KIND_READINGS, "b001", 4)
    assert batch is not None and batch.count == 4 and batch.seq == 1
    assert spool.stats()["spool_readings"] == 10 and spool.pending == 6
    decoded = decode_batch(spool.encode("dev1", batch))
    assert [r.time_ms for r in decoded.readings] == [NOW_MS + i * 100 for i in range(4)]
    assert (decoded.seq, decoded.boot_id, decoded.device_id) == (1, "b001", "dev1")
    assert spool.ack("other-boot", 1, NOW_MS) is None  # another boot's seq 1 is not ours
    assert spool.ack("b001", 1, NOW_MS) == batch
    assert spool.ack("b001", 1, NOW_MS) is None  # a repeated ack changes nothing
    assert spool.stats()["spool_readings"] == 6
    assert spool.stats()["last_ack"] == {"seq": 1, "boot": "b001", "time_ms": NOW_MS}


def test_unacked_batches_and_sequence_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.add(readings(10))
    first = spool.next_batch(KIND_READINGS, "boot1", 5)
    assert first is not None
    payload = spool.encode("dev1", first)
    spool.db.close()  # no clean shutdown: as after SIGKILL

    again = Spool(tmp_path / "s.db")
    assert again.unacked() == [first]
    assert again.encode("dev1", first) == payload  # resent byte for byte, same (boot, seq)
    assert again.pending == 5
    second = again.next_batch(KIND_READINGS, "boot2", 100)
    assert second is not None and second.seq == 2 and second.count == 5
    assert again.ack("boot1", 1, NOW_MS) is not None
    assert again.ack("boot2", 2, NOW_MS) is not None
    assert again.stats()["spool_readings"] == 0


def test_faults_and_flags_are_encoded_per_protocol(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.add(
        [
            Reading("s1", NOW_MS, None, protocol.Q_PROBE_FAULT, protocol.FAULT_POWER_ON),
            Reading("s1", NOW_MS + 1000, 21.0625, protocol.Q_CLOCK_UNSYNCED, None),
        ]
    )
    batch = spool.next_batch(KIND_READINGS, "b", 10)
    assert batch is not None
    text = spool.encode("d", batch).decode()
    assert '"r":[["s1",0,null,1,"power_on"],["s1",1000,21.0625,2]]' in text


def test_events_are_batched_separately(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.add(readings(3), [EventRow("s1", NOW_MS, protocol.EV_THRESHOLD_HIGH, 31.5, 30.0)])
    assert spool.pending_events() == 1
    batch = spool.next_batch(KIND_EVENTS, "b", 100)
    assert batch is not None and batch.kind == KIND_EVENTS
    decoded = decode_batch(spool.encode("d", batch))
    assert decoded.readings == [] and decoded.events[0].kind == protocol.EV_THRESHOLD_HIGH
    assert spool.pending == 3  # readings untouched
    spool.ack("b", batch.seq, NOW_MS)
    assert spool.stats()["spool_events"] == 0


def test_size_cap_drops_the_oldest_unsent_readings_and_counts_exactly(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_readings=100)
    spool.add(readings(30))
    inflight = spool.next_batch(KIND_READINGS, "b", 30)
    assert inflight is not None
    spool.add(readings(120, start=30))
    dropped = spool.enforce_limits(NOW_MS)
    assert dropped == 50 and spool.dropped_total == 50
    assert spool.stats()["spool_readings"] == 100
    times = [r[0] for r in spool.db.execute("SELECT time_ms FROM readings ORDER BY id")]
    # The sent batch is kept (it may be stored upstream already); the oldest unsent went.
    assert times[:30] == [NOW_MS + i * 100 for i in range(30)]
    assert times[30] == NOW_MS + 80 * 100
    spool.db.close()
    assert Spool(tmp_path / "s.db", max_readings=100).dropped_total == 50  # persisted


def test_age_limit_spares_readings_with_an_unsynchronised_clock(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_age_s=60)
    old = NOW_MS - 120_000
    spool.add(
        [
            Reading("s1", old, 1.0, 0, None),
            Reading("s1", old + 1, 1.0, protocol.Q_CLOCK_UNSYNCED, None),
            Reading("s1", NOW_MS, 1.0, 0, None),
        ]
    )
    assert spool.enforce_limits(NOW_MS) == 1
    assert spool.stats()["spool_readings"] == 2


def test_batch_never_spans_more_than_protocol_offsets_allow(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    day = 86_400_000
    spool.add([Reading("s1", 1000, 1.0, 2, None), Reading("s1", NOW_MS, 1.0, 0, None)])
    first = spool.next_batch(KIND_READINGS, "b", 10)
    second = spool.next_batch(KIND_READINGS, "b", 10)
    assert first is not None and second is not None
    assert (first.count, second.count) == (1, 1)
    for b in (first, second):
        obj = json.loads(spool.encode("d", b))
        assert all(abs(r[1]) < day for r in obj["r"])


def test_readers_see_commits_while_the_writer_holds_the_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.add(readings(5))
    other = sqlite3.connect(str(tmp_path / "s.db"))
    assert other.execute("SELECT count(*) FROM readings").fetchone()[0] == 5
