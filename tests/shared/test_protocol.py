"""Wire protocol v1 golden vectors: exact bytes out, exact records and reasons back in."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import protocol as p
from shared.decode import BatchError, DecodedBatch, Event, Reading, RecordError, decode_batch
from tests.shared.run_vectors import run_protocol
from tests.shared.vector_check import case_ids, load

GOLDEN = load("protocol")
T0 = 1_763_900_000


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=case_ids(GOLDEN))
def test_encoder_gives_the_golden_output(case: dict[str, Any]) -> None:
    assert run_protocol(case) == case["expected"]


def test_encoded_batch_is_compact_json_that_cpython_reads_back() -> None:
    payload = p.encode_batch(
        "d1",
        7,
        "9f2c01aa",
        T0,
        [("s1", 0, 21.0625, p.Q_OK), ("s1", 1000, 85.0, p.Q_PROBE_FAULT, p.FAULT_POWER_ON)],
        [("s1", 1000, p.EV_THRESHOLD_HIGH, 31.5, 30.0)],
    )
    assert isinstance(payload, bytes)
    obj = json.loads(payload)
    assert payload == json.dumps(obj, separators=(",", ":")).encode()


def _batch(records: Any, events: list[Any] | None = None, **envelope: Any) -> bytes:
    obj: dict[str, Any] = {"v": 1, "dev": "d1", "seq": 7, "boot": "9f2c01aa", "t0": T0}
    obj.update(envelope)
    obj["r"] = records
    if events is not None:
        obj["ev"] = events
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()


def test_good_batch_decodes_to_exact_readings_and_events() -> None:
    payload = p.encode_batch(
        "d1",
        7,
        "9f2c01aa",
        T0,
        [
            ("s1", 0, 21.0625, p.Q_OK),
            ("s1", 1000, 85.0, p.Q_PROBE_FAULT, p.FAULT_POWER_ON),
            ("28-0316a2794b2f", -250, -4.25, p.Q_CLOCK_UNSYNCED),
            ("s2", 2000, 20, p.Q_OK),
        ],
        [("s1", 1000, p.EV_THRESHOLD_HIGH, 31.5, 30.0), ("s2", 60000, p.EV_ANOMALY, 25.25, 4.5)],
    )
    assert decode_batch(payload) == DecodedBatch(
        device_id="d1",
        seq=7,
        boot_id="9f2c01aa",
        t0=T0,
        readings=[
            Reading("s1", T0 * 1000, 21.0625, p.Q_OK, None),
            Reading("s1", T0 * 1000 + 1000, None, p.Q_PROBE_FAULT, p.FAULT_POWER_ON),
            Reading("28-0316a2794b2f", T0 * 1000 - 250, -4.25, p.Q_CLOCK_UNSYNCED, None),
            Reading("s2", T0 * 1000 + 2000, 20.0, p.Q_OK, None),
        ],
        events=[
            Event("s1", T0 * 1000 + 1000, p.EV_THRESHOLD_HIGH, 31.5, 30.0),
            Event("s2", T0 * 1000 + 60000, p.EV_ANOMALY, 25.25, 4.5),
        ],
        errors=[],
    )


def test_a_fault_reading_never_carries_a_temperature_even_if_sent_one() -> None:
    batch = decode_batch(_batch([["s1", 0, 85.0, 1, "power_on"]]))
    assert batch.readings == [Reading("s1", T0 * 1000, None, 1, "power_on")]


# Each bad record, the reason it is refused with, and its raw text as kept for the record.
BAD_RECORDS = [
    ("not a list", {"s": "s1"}, "malformed_record"),
    ("too short", ["s1", 0, 21.0], "malformed_record"),
    ("too long", ["s1", 0, 21.0, 0, "crc", 1], "malformed_record"),
    ("fault reason on a good reading", ["s1", 0, 21.0, 0, "crc"], "malformed_record"),
    ("sensor id with a slash", ["s/1", 0, 21.0, 0], "bad_sensor_id"),
    ("sensor id empty", ["", 0, 21.0, 0], "bad_sensor_id"),
    ("sensor id a number", [5, 0, 21.0, 0], "bad_sensor_id"),
    ("NaN", ["s1", 0, float("nan"), 0], "not_a_number"),
    ("Infinity", ["s1", 0, float("inf"), 0], "not_a_number"),
    ("-Infinity", ["s1", 0, float("-inf"), 0], "not_a_number"),
    ("null without fault flag", ["s1", 0, None, 0], "not_a_number"),
    ("string value", ["s1", 0, "21.5", 0], "bad_value"),
    ("boolean value", ["s1", 0, True, 0], "bad_value"),
    ("unknown quality bit", ["s1", 0, 21.0, 4], "bad_quality"),
    ("negative quality", ["s1", 0, 21.0, -1], "bad_quality"),
    ("quality as string", ["s1", 0, 21.0, "0"], "bad_quality"),
    ("unknown fault reason", ["s1", 0, None, 1, "gremlins"], "bad_fault_reason"),
    ("fault without reason", ["s1", 0, None, 1], "bad_fault_reason"),
    ("offset beyond a day", ["s1", 86_400_001, 21.0, 0], "bad_time"),
    ("offset before a day", ["s1", -86_400_001, 21.0, 0], "bad_time"),
    ("fractional offset", ["s1", 1.5, 21.0, 0], "bad_time"),
]


def test_bad_records_are_refused_one_by_one_and_good_ones_kept() -> None:
    good = ["s1", 500, 20.5, 0]
    records: list[Any] = []
    for _, bad, _ in BAD_RECORDS:
        records += [bad, good]
    batch = decode_batch(_batch(records))
    assert batch.readings == [Reading("s1", T0 * 1000 + 500, 20.5, 0, None)] * len(BAD_RECORDS)
    assert batch.errors == [
        RecordError(2 * i, reason, json.dumps(bad, separators=(",", ":"), allow_nan=True), "r")
        for i, (_, bad, reason) in enumerate(BAD_RECORDS)
    ]


def test_offsets_of_exactly_a_day_are_accepted() -> None:
    batch = decode_batch(_batch([["s1", 86_400_000, 1.0, 0], ["s1", -86_400_000, 2.0, 0]]))
    assert [r.time_ms for r in batch.readings] == [(T0 + 86_400) * 1000, (T0 - 86_400) * 1000]
    assert batch.errors == []


def test_bad_events_are_refused_with_their_section() -> None:
    events = [
        ["s1", 0, "threshold_high", 31.0, 30.0],
        ["s1", 0, "meltdown", 31.0, 30.0],
        ["s1", 0, "anomaly", "x", 4.0],
        ["s1", 0, "anomaly", 31.0],
        ["s 1", 0, "anomaly", 31.0, 4.0],
        ["s1", 0.5, "anomaly", 31.0, 4.0],
    ]
    batch = decode_batch(_batch([], events))
    assert batch.events == [Event("s1", T0 * 1000, "threshold_high", 31.0, 30.0)]
    assert [(e.index, e.reason, e.section) for e in batch.errors] == [
        (1, "bad_event_kind", "ev"),
        (2, "bad_value", "ev"),
        (3, "malformed_event", "ev"),
        (4, "bad_sensor_id", "ev"),
        (5, "bad_time", "ev"),
    ]


ENVELOPE_ERRORS = [
    ("malformed json", b'{"v":1,', "malformed_json"),
    ("not utf-8", b'{"v":1,"dev":"\xff"}', "malformed_json"),
    ("not an object", b"[1,2]", "malformed_batch"),
    ("version 2", _batch([], v=2), "unsupported_version"),
    ("version missing", b'{"dev":"d1","seq":1,"boot":"b","t0":1,"r":[]}', "unsupported_version"),
    ("version as string", _batch([], v="1"), "unsupported_version"),
    ("version true", _batch([], v=True), "unsupported_version"),
    ("version 1.0", _batch([], v=1.0), "unsupported_version"),
    ("device id with a plus", _batch([], dev="d+1"), "bad_device_id"),
    ("device id too long", _batch([], dev="d" * 65), "bad_device_id"),
    ("device id missing", _batch([], dev=None), "bad_device_id"),
    ("negative seq", _batch([], seq=-1), "bad_seq"),
    ("boot id with a slash", _batch([], boot="a/b"), "bad_boot_id"),
    ("t0 fractional", _batch([], t0=1.5), "bad_time"),
    ("records not a list", _batch({}), "malformed_batch"),
    (
        "too many readings",
        _batch([["s1", 0, 1.0, 0]] * (p.MAX_READINGS_PER_BATCH + 1)),
        "too_many_records",
    ),
    (
        "too many events",
        _batch([], [["s1", 0, "anomaly", 1.0, 5.0]] * (p.MAX_EVENTS_PER_BATCH + 1)),
        "too_many_records",
    ),
]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(c[1], c[2]) for c in ENVELOPE_ERRORS],
    ids=[c[0] for c in ENVELOPE_ERRORS],
)
def test_unusable_envelope_raises_batch_error_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(BatchError) as info:
        decode_batch(payload)
    assert info.value.reason == reason


def test_oversize_payload_is_refused_before_parsing() -> None:
    payload = b"{" + b" " * p.MAX_PAYLOAD_BYTES + b"}"  # not even JSON: size is checked first
    with pytest.raises(BatchError) as info:
        decode_batch(payload)
    assert info.value.reason == "oversize"
    with pytest.raises(BatchError) as info:
        decode_batch(_batch([["s1", 0, 1.0, 0]]), max_bytes=10)
    assert info.value.reason == "oversize"


def test_the_largest_allowed_batch_decodes() -> None:
    readings = [("s1", i, 20.0 + i / 16, 0) for i in range(p.MAX_READINGS_PER_BATCH)]
    payload = p.encode_batch("d1", 1, "b", T0, readings)
    assert len(payload) <= p.MAX_PAYLOAD_BYTES
    assert len(decode_batch(payload).readings) == p.MAX_READINGS_PER_BATCH
