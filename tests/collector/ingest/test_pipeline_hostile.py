"""The ingest pipeline's prepare step, in-process on a real database: it never raises for
content, accounts for every record as a row or a reject, and checks event times like reading
times."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from hypothesis import given

from collector.config import Settings
from collector.db import migrate
from collector.ingest.pipeline import CBOR, JSON, IngestPipeline
from collector.ingest.registry import DeviceRegistry
from collector.ingest.work import Work
from collector.ingest.writer import GroupCommitWriter
from shared.decode import BatchError, parse_cbor, parse_payload
from tests.support.hostile import CBOR_VALUES, JSON_VALUES, fuzz_settings, mutated_batches

NOW_S = int(time.time())
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def pipeline(database_url: str) -> Iterator[IngestPipeline]:
    settings = Settings(database_url=database_url, auto_register_devices=True)
    migrate.upgrade(settings)
    registry = DeviceRegistry(database_url, auto_register=True)
    registry.open()
    # Never started: prepare only builds the work the writer would commit.
    writer = GroupCommitWriter(database_url)
    yield IngestPipeline(settings, writer, registry)
    registry.close()


def _prepare(pipeline: IngestPipeline, obj: dict[str, Any], body_format: str = JSON) -> Work:
    payload = cbor2.dumps(obj) if body_format == CBOR else json.dumps(obj).encode()
    return pipeline.prepare(payload, identity=None, transport="http", body_format=body_format)


def _batch(t0: int, records: list[Any], events: list[Any]) -> dict[str, Any]:
    return {"v": 1, "dev": "d1", "seq": 1, "boot": "b1", "t0": t0, "r": records, "ev": events}


@pytest.mark.parametrize("body_format", [JSON, CBOR])
def test_event_times_get_the_clock_checks_of_readings(
    pipeline: IngestPipeline, body_format: str
) -> None:
    good = ["s1", 0, "anomaly", 25.0, 4.5]
    ahead = ["s1", DAY_MS, "anomaly", 25.0, 4.5]  # a day ahead of the collector's clock
    work = _prepare(pipeline, _batch(NOW_S, [["s1", 0, 20.5, 0]], [good, ahead]), body_format)
    assert [e.time_ms for e in work.events] == [NOW_S * 1000]
    assert [(r.reason, r.detail, r.record_index) for r in work.rejects] == [
        ("clock_future", "ev[1]", 1)
    ]
    for t0, reason in ((1_000_000, "clock_unset"), (NOW_S - 500 * 86_400, "clock_too_old")):
        work = _prepare(pipeline, _batch(t0, [], [good]), body_format)
        assert work.events == []
        assert [r.reason for r in work.rejects] == [reason]


def test_a_reading_rejected_after_decoding_is_named_by_its_place_in_the_batch(
    pipeline: IngestPipeline,
) -> None:
    records = [["s1", 0, "hot", 0], ["s2", 0, 20.5, 0], ["s3", 0, 900.0, 0]]
    events = [["s1", 0, "meltdown", 1.0, 1.0], ["s1", DAY_MS, "anomaly", 25.0, 4.5]]
    work = _prepare(pipeline, _batch(NOW_S, records, events))
    assert [row[1] for row in work.rows] == ["s2"]
    assert sorted((r.detail, r.reason) for r in work.rejects) == [
        ("ev[0]", "bad_event_kind"),
        ("ev[1]", "clock_future"),
        ("r[0]", "bad_value"),
        ("r[2]", "out_of_range"),
    ]


def test_a_batch_with_two_values_for_one_sensor_and_time_stores_the_first(
    pipeline: IngestPipeline,
) -> None:
    work = _prepare(pipeline, _batch(NOW_S, [["s1", 0, 20.5, 0], ["s1", 0, 30.0, 0]], []))
    assert [row[3] for row in work.rows] == [20.5]
    assert [(r.reason, r.detail) for r in work.rejects] == [("conflicting_duplicate", "r[1]")]


STRUCTURE_DETAILS = {"not an object", "r and ev must be lists"}


def _assert_accounted_for(work: Work, parsed: Any) -> None:
    """Refused as a whole with a reason of its own, or one row or reject per record."""
    assert isinstance(work, Work)
    assert all(r.reason for r in work.rejects)
    if work.outcome.error is not None:
        assert len(work.rejects) == 1 and not work.rows and not work.events
        # Not the last resort, which only a gap in the decoder's checks reaches.
        reject = work.rejects[0]
        assert reject.reason != "malformed_batch" or reject.detail in STRUCTURE_DETAILS
        return
    places = [r.detail or "" for r in work.rejects]
    assert len(work.rows) + sum(p.startswith("r[") for p in places) == len(parsed.get("r", []))
    assert len(work.events) + sum(p.startswith("ev[") for p in places) == len(parsed.get("ev", []))
    assert len(places) == len(set(places))


def _parsed(payload: bytes, body_format: str) -> Any:
    try:
        return parse_cbor(payload) if body_format == CBOR else parse_payload(payload)
    except BatchError:
        return None


@fuzz_settings(150)
@given(batch=mutated_batches(JSON_VALUES, NOW_S))
def test_prepare_accounts_for_every_record_of_a_mutated_json_batch(
    pipeline: IngestPipeline, batch: dict[str, Any]
) -> None:
    payload = json.dumps(batch, allow_nan=True).encode()
    work = pipeline.prepare(payload, identity=None, transport="http", body_format=JSON)
    _assert_accounted_for(work, _parsed(payload, JSON))


@fuzz_settings(150)
@given(batch=mutated_batches(CBOR_VALUES, NOW_S))
def test_prepare_accounts_for_every_record_of_a_mutated_cbor_batch(
    pipeline: IngestPipeline, batch: dict[str, Any]
) -> None:
    payload = cbor2.dumps(batch)
    work = pipeline.prepare(payload, identity=None, transport="coap", body_format=CBOR)
    _assert_accounted_for(work, _parsed(payload, CBOR))
