"""The group-commit writer against a real TimescaleDB: content the database refuses is isolated
and quarantined while the rest of the group commits; a lost connection is retried and loses
nothing; a stalled writer makes the collector not ready; a refused batch changes no device."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import cbor2
import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY

from collector.config import Settings
from collector.db import migrate
from collector.ingest.pipeline import CBOR, IngestPipeline
from collector.ingest.registry import DeviceRegistry
from collector.ingest.work import QUARANTINED, Outcome, Reject, Work
from collector.ingest.writer import GroupCommitWriter, is_transient
from shared.decode import Event
from shared.protocol import encode_batch
from tests.collector.conftest import query
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for
from tests.support.processes import start_collector

# Every byte a device may send and text cannot hold: NUL, invalid UTF-8, a lone continuation byte.
HOSTILE_BYTES = b'{"v":1,"dev":"\x00evil"}\xff\xfe\x00\x80 end'


@pytest.fixture
def migrated_url(fresh_database_url: str) -> str:
    migrate.upgrade(Settings(database_url=fresh_database_url))
    return fresh_database_url


class Answers:
    """Collects what the writer answers each batch (``on_done``), from its threads."""

    def __init__(self) -> None:
        self.outcomes: dict[str, list[Outcome]] = {}
        self._lock = threading.Lock()

    def callback(self, key: str) -> Any:
        def done(outcome: Outcome) -> None:
            with self._lock:
                self.outcomes.setdefault(key, []).append(outcome)

        return done

    def wait(self, keys: list[str], timeout_s: float = 30) -> None:
        wait_for(lambda: all(k in self.outcomes for k in keys), timeout_s, what=f"answers {keys}")


def good_work(answers: Answers, device: str, seq: int, t_ms: int, n: int = 3) -> Work:
    rows = [(device, "s1", t_ms + i, 20.0 + i, 0, None) for i in range(n)]
    return Work(
        "mqtt",
        Outcome(device, seq, "boot-1"),
        rows=rows,
        raw=f"batch {device} {seq}".encode(),
        on_done=answers.callback(f"{device}/{seq}"),
    )


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def rejects(url: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        "SELECT device_id, transport, reason, detail, record_index, raw FROM ingest_rejects "
        "ORDER BY id",
    )


def test_poison_batches_are_quarantined_whole_and_the_rest_of_their_group_commits(
    migrated_url: str,
) -> None:
    now_ms = int(time.time() * 1000)
    answers = Answers()
    writer = GroupCommitWriter(migrated_url, threads=1, max_wait_s=0.5)
    goods = [good_work(answers, f"good{i}", 1, now_ms) for i in range(5)]
    poisons = {
        # Text cannot hold NUL: the server refuses it in COPY, psycopg refuses to send it as a
        # parameter.
        "nul": Work(
            "mqtt",
            Outcome("nul-dev", 1, "b"),
            rows=[("nul-dev", "s\x00", now_ms, 20.0, 0, None)],
            raw=HOSTILE_BYTES,
        ),
        "nul-event": Work(
            "mqtt",
            Outcome("nul-ev-dev", 1, "b"),
            rows=[("nul-ev-dev", "s1", now_ms, 20.0, 0, None)],
            events=[Event("s1", now_ms, "spi\x00ke", 1.0, None)],
            raw=HOSTILE_BYTES + b"event",
        ),
        # devices.last_seq is a bigint.
        "seq": Work(
            "mqtt",
            Outcome("seq-dev", 2**63, "b"),
            rows=[("seq-dev", "s1", now_ms, 20.0, 0, None)],
            raw=HOSTILE_BYTES + b"seq",
        ),
        # Beyond timestamptz: the server refuses it (interval out of range).
        "time": Work(
            "mqtt",
            Outcome("time-dev", 1, "b"),
            rows=[("time-dev", "s1", now_ms, 20.0, 0, None)],
            events=[Event("s1", 10**15 * 1000, "spike", 1.0, None)],
            raw=HOSTILE_BYTES + b"time",
        ),
        # A lone surrogate is not UTF-8: the client refuses to encode it.
        "surrogate": Work(
            "mqtt",
            Outcome("sur-dev", 1, "b"),
            rows=[("sur-dev", "s\udc80", now_ms, 20.0, 0, None)],
            raw=HOSTILE_BYTES + b"surrogate",
        ),
    }
    for key, work in poisons.items():
        work.on_done = answers.callback(key)
    # A refused batch whose payload and reject text hold NUL is not poison any more: the payload
    # is stored as bytes and the text is cleaned.
    refused = Work(
        "coap",
        Outcome("ref\x00dev", None, None, error="malformed_json"),
        rejects=[Reject("malformed_json", "ref\x00dev", "at \x00 byte 3", None, HOSTILE_BYTES)],
        raw=HOSTILE_BYTES,
        on_done=answers.callback("refused"),
    )
    before = counter("thermowatch_ingest_quarantined_total", transport="mqtt")
    # Queued before the writer starts, so they are committed as one group.
    group = [goods[0], poisons["nul"], goods[1], goods[2], poisons["seq"], refused]
    group += [poisons["time"], goods[3], poisons["surrogate"], goods[4], poisons["nul-event"]]
    for work in group:
        assert writer.submit(work)
    writer.start()
    try:
        answers.wait([*(f"good{i}/1" for i in range(5)), *poisons, "refused"])
        # Each batch answered once; the good ones stored, the poison ones quarantined.
        assert all(len(v) == 1 for v in answers.outcomes.values())
        for i in range(5):
            outcome = answers.outcomes[f"good{i}/1"][0]
            assert (outcome.error, outcome.stored, outcome.duplicates) == (None, 3, 0)
        for key in poisons:
            outcome = answers.outcomes[key][0]
            assert outcome.error == QUARANTINED
            assert outcome.stored == 0 and outcome.rejected >= 1
        assert answers.outcomes["refused"][0].error == "malformed_json"

        assert query(
            migrated_url, "SELECT device_id, count(*) FROM readings GROUP BY 1 ORDER BY 1"
        ) == [(f"good{i}", 3) for i in range(5)]
        assert [r[0] for r in query(migrated_url, "SELECT device_id FROM devices ORDER BY 1")] == [
            f"good{i}" for i in range(5)
        ]
        assert query(migrated_url, "SELECT count(*) FROM device_events") == [(0,)]

        stored = {(r[0], r[2]): r for r in rejects(migrated_url)}
        assert len(stored) == 6
        for device, raw, error in [
            ("nul-dev", HOSTILE_BYTES, "0x00"),
            ("nul-ev-dev", HOSTILE_BYTES + b"event", "NUL"),
            ("seq-dev", HOSTILE_BYTES + b"seq", "bigint"),
            ("time-dev", HOSTILE_BYTES + b"time", "out of range"),
            ("sur-dev", HOSTILE_BYTES + b"surrogate", "surrogates"),
        ]:
            row = stored[(device, QUARANTINED)]
            assert row[1] == "mqtt"
            assert error in row[3]
            assert bytes(row[5]) == raw  # every byte, 0x00 and invalid UTF-8 included
        row = stored[("refdev", "malformed_json")]
        assert (row[1], row[3], bytes(row[5])) == ("coap", "at  byte 3", HOSTILE_BYTES)
        assert counter("thermowatch_ingest_quarantined_total", transport="mqtt") == before + 5

        # The writer goes on committing.
        later = good_work(answers, "later", 7, now_ms)
        writer.submit(later)
        answers.wait(["later/7"])
        assert answers.outcomes["later/7"][0].stored == 3
        assert query(migrated_url, "SELECT last_seq FROM devices WHERE device_id = 'later'") == [
            (7,)
        ]
    finally:
        writer.stop()


def test_the_database_errors_that_go_away_are_told_from_the_ones_content_causes() -> None:
    assert is_transient(psycopg.errors.SerializationFailure())
    assert is_transient(psycopg.errors.DeadlockDetected())
    assert is_transient(psycopg.errors.AdminShutdown())
    assert is_transient(psycopg.errors.CannotConnectNow())
    assert is_transient(psycopg.OperationalError("connection lost"))
    assert is_transient(psycopg.InterfaceError("the connection is closed"))
    assert not is_transient(psycopg.errors.NumericValueOutOfRange())
    assert not is_transient(psycopg.errors.UniqueViolation())
    assert not is_transient(psycopg.errors.UndefinedColumn())
    assert not is_transient(psycopg.errors.FeatureNotSupported())
    assert not is_transient(psycopg.errors.ProgramLimitExceeded())  # e.g. a key too long
    assert not is_transient(psycopg.DataError("PostgreSQL text fields cannot contain NUL"))
    assert not is_transient(OverflowError("int too big to convert"))


def _blocked_backend(url: str) -> int | None:
    """The pid of a session of this database waiting for a lock."""
    rows = query(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    return int(rows[0][0]) if rows else None


def test_a_connection_lost_during_a_commit_is_retried_and_nothing_is_lost_or_quarantined(
    migrated_url: str,
) -> None:
    now_ms = int(time.time() * 1000)
    answers = Answers()
    writer = GroupCommitWriter(migrated_url, threads=1)
    writer.start()
    errors_before = counter("thermowatch_database_errors_total")
    quarantined_before = counter("thermowatch_ingest_quarantined_total", transport="mqtt")
    try:
        with psycopg.connect(migrated_url) as blocker:
            # Hold the writer inside its transaction, then kill its session from outside.
            blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
            writer.submit(good_work(answers, "dev", 1, now_ms, n=10))
            pid = wait_for(lambda: _blocked_backend(migrated_url), 15, what="a blocked writer")
            query(migrated_url, "SELECT pg_terminate_backend(%s)", (pid,))
            # It comes back on a new connection and waits for the lock again.
            wait_for(lambda: (_blocked_backend(migrated_url) or pid) != pid, 15, what="a reconnect")
            assert "dev/1" not in answers.outcomes
            blocker.rollback()
        answers.wait(["dev/1"])
        outcome = answers.outcomes["dev/1"][0]
        assert (outcome.error, outcome.stored, outcome.duplicates) == (None, 10, 0)
        assert query(migrated_url, "SELECT count(*) FROM readings") == [(10,)]
        assert rejects(migrated_url) == []
        assert counter("thermowatch_database_errors_total") > errors_before
        assert (
            counter("thermowatch_ingest_quarantined_total", transport="mqtt") == quarantined_before
        )
    finally:
        writer.stop()


def test_readyz_says_not_ready_while_the_writer_is_stalled_and_ready_once_it_commits(
    fresh_database_url: str, broker: MosquittoBroker
) -> None:
    proc = start_collector(fresh_database_url, broker.port, ingest_writer_stall_s=1)
    try:
        assert httpx.get(proc.url + "/readyz").status_code == 200
        with psycopg.connect(fresh_database_url) as blocker:
            blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
            client = TestClient(broker.port)
            client.publish_all(
                [
                    (
                        "tw/v1/stalled/readings",
                        encode_batch("stalled", 1, "b", int(time.time()), [("s1", 0, 20.0, 0)]),
                    )
                ]
            )
            client.close()
            answer = wait_for(
                lambda: (r := httpx.get(proc.url + "/readyz")).status_code == 503 and r, 20
            )
            body = answer.json()
            assert body["ready"] is False
            assert body["checks"]["writer"] is False
            assert body["checks"]["database"] is True
            assert "nothing committed" in body["reasons"]["writer"]
            blocker.rollback()
        wait_for(lambda: httpx.get(proc.url + "/readyz").status_code == 200, 20)
        assert query(fresh_database_url, "SELECT device_id FROM readings") == [("stalled",)]
    finally:
        proc.stop()


@pytest.fixture
def pipeline_for(migrated_url: str) -> Iterator[Any]:
    """An ingest pipeline with its writer and device registry on the migrated database."""
    made: list[tuple[GroupCommitWriter, DeviceRegistry]] = []

    def make(*, auto_register: bool) -> IngestPipeline:
        settings = Settings(database_url=migrated_url, auto_register_devices=auto_register)
        writer = GroupCommitWriter(migrated_url, threads=1)
        registry = DeviceRegistry(migrated_url, auto_register=auto_register)
        registry.open()
        writer.start()
        made.append((writer, registry))
        return IngestPipeline(settings, writer, registry)

    yield make
    for writer, registry in made:
        writer.stop()
        registry.close()


def _device_state(url: str) -> list[list[tuple[Any, ...]]]:
    return [
        query(url, "SELECT * FROM devices ORDER BY device_id"),
        query(url, "SELECT * FROM sensors ORDER BY device_id, sensor_id"),
        query(url, "SELECT count(*) FROM readings"),
    ]


def test_a_batch_refused_for_naming_another_device_changes_no_device(
    migrated_url: str, pipeline_for: Any
) -> None:
    pipeline = pipeline_for(auto_register=True)
    answers = Answers()
    t0 = int(time.time()) - 60
    pipeline.submit(
        encode_batch("neighbour", 5, "boot-n", t0, [("s1", 0, 20.0, 0)]),
        identity="neighbour",
        transport="mqtt",
        on_done=answers.callback("neighbour"),
    )
    answers.wait(["neighbour"])
    before = _device_state(migrated_url)
    # The attacker speaks for its neighbour, with a newer boot, seq and a new sensor; as CBOR,
    # so the refused payload is full of 0x00 bytes.
    batch = {"v": 1, "dev": "neighbour", "seq": 99, "boot": "boot-x", "t0": t0 + 30}
    batch["r"] = [["s9", 0, 21.0, 0]]
    payload = cbor2.dumps(batch)
    assert b"\x00" in payload
    pipeline.submit(
        payload,
        identity="attacker",
        transport="coap",
        on_done=answers.callback("attacker"),
        body_format=CBOR,
    )
    answers.wait(["attacker"])
    assert answers.outcomes["attacker"][0].error == "device_mismatch"
    assert _device_state(migrated_url) == before
    assert [(r[0], r[2], bytes(r[5])) for r in rejects(migrated_url)] == [
        ("attacker", "device_mismatch", payload)
    ]


def test_a_batch_from_an_unknown_device_creates_no_row_but_its_reject(
    migrated_url: str, pipeline_for: Any
) -> None:
    pipeline = pipeline_for(auto_register=False)
    answers = Answers()
    before = _device_state(migrated_url)
    payload = encode_batch("stranger", 3, "b", int(time.time()), [("s1", 0, 20.0, 0)])
    pipeline.submit(payload, identity=None, transport="http", on_done=answers.callback("stranger"))
    answers.wait(["stranger"])
    assert answers.outcomes["stranger"][0].error == "unknown_device"
    assert _device_state(migrated_url) == before
    assert query(migrated_url, "SELECT count(*) FROM devices") == [(0,)]
    assert [(r[0], r[2], bytes(r[5])) for r in rejects(migrated_url)] == [
        ("stranger", "unknown_device", payload)
    ]


def test_a_quarantine_the_database_refuses_falls_back_to_a_bare_row_then_to_a_count(
    migrated_url: str,
) -> None:
    now_ms = int(time.time() * 1000)
    # The database refuses quarantine rows that carry a payload, then every quarantine row.
    execute(
        migrated_url,
        """
        CREATE FUNCTION refuse_reject() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.reason = 'quarantined' AND (NEW.raw IS NOT NULL OR NEW.device_id = 'bare-too')
            THEN RAISE EXCEPTION 'refused';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_reject BEFORE INSERT ON ingest_rejects
            FOR EACH ROW EXECUTE FUNCTION refuse_reject();
        """,
    )
    answers = Answers()
    writer = GroupCommitWriter(migrated_url, threads=1)
    lost_before = counter("thermowatch_ingest_quarantine_failed_total")
    for device in ("bare", "bare-too"):
        writer.submit(
            Work(
                "mqtt",
                Outcome(device, 2**64, "b"),
                rows=[(device, "s1", now_ms, 20.0, 0, None)],
                raw=HOSTILE_BYTES,
                on_done=answers.callback(device),
            )
        )
    writer.submit(good_work(answers, "fine", 1, now_ms))
    writer.start()
    try:
        answers.wait(["bare", "bare-too", "fine/1"])
        assert answers.outcomes["bare"][0].error == QUARANTINED
        assert answers.outcomes["bare-too"][0].error == QUARANTINED
        assert answers.outcomes["fine/1"][0].stored == 3
        assert [(r[0], r[2], r[3], r[5]) for r in rejects(migrated_url)] == [
            ("bare", QUARANTINED, "Unstorable", None)
        ]
        assert counter("thermowatch_ingest_quarantine_failed_total") == lost_before + 1
    finally:
        writer.stop()


def test_a_failure_that_is_not_the_contents_fault_is_retried_not_quarantined(
    migrated_url: str,
) -> None:
    now_ms = int(time.time() * 1000)
    answers = Answers()
    writer = GroupCommitWriter(migrated_url, threads=1)
    writer.start()
    errors_before = counter("thermowatch_database_errors_total")
    # A schema change under the running writer: every write fails, with or without content.
    execute(migrated_url, "ALTER TABLE sensors RENAME COLUMN last_fault TO renamed")
    try:
        writer.submit(good_work(answers, "dev", 1, now_ms))
        wait_for(
            lambda: counter("thermowatch_database_errors_total") >= errors_before + 2,
            30,
            what="the writer retrying",
        )
        assert "dev/1" not in answers.outcomes
        assert rejects(migrated_url) == []
        execute(migrated_url, "ALTER TABLE sensors RENAME COLUMN renamed TO last_fault")
        answers.wait(["dev/1"])
        assert answers.outcomes["dev/1"][0].error is None
        assert answers.outcomes["dev/1"][0].stored == 3
        assert rejects(migrated_url) == []
    finally:
        writer.stop()
