"""Hostile input to the decoder: whatever a sender writes, a bad record is rejected alone with its
reason, the good records of its batch are kept, and nothing but BatchError comes out."""

from __future__ import annotations

import datetime
import decimal
import fractions
import ipaddress
import json
import re
import uuid
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import protocol as p
from shared.decode import (
    MAX_SEQ,
    MAX_T0_S,
    RAW_MAX_CHARS,
    BatchError,
    DecodedBatch,
    Event,
    Reading,
    RecordError,
    _raw,
    decode_batch,
    decode_object,
    parse_cbor,
    parse_payload,
)
from tests.support.hostile import CBOR_VALUES, JSON_VALUES, fuzz_settings, mutated_batches

T0 = 1_763_900_000
GOOD = ["s1", 0, 20.5, 0]
GOOD2 = ["s2", 1000, 21.0, 0]
KEPT = [
    Reading("s1", T0 * 1000, 20.5, 0, None),
    Reading("s2", T0 * 1000 + 1000, 21.0, 0, None),
]
GOOD_EVENT = ["s1", 0, "threshold_high", 31.5, 30.0]
BIG = "9" * 400  # beyond a float's range
HUGE = "9" * 5000  # beyond Python's limit for converting digits to an int


def _json(records: list[str], events: list[str] | None = None, **envelope: str) -> bytes:
    """A batch as JSON text built by hand, so it can hold what json.dumps would not write."""
    fields = {"v": "1", "dev": '"d1"', "seq": "7", "boot": '"b1"', "t0": str(T0)}
    fields.update(envelope)
    text = ",".join(f'"{key}":{value}' for key, value in fields.items())
    text += ',"r":[' + ",".join(records) + "]"
    if events is not None:
        text += ',"ev":[' + ",".join(events) + "]"
    return ("{" + text + "}").encode()


def _cbor(records: list[Any], events: list[Any] | None = None, **envelope: Any) -> bytes:
    obj: dict[str, Any] = {"v": 1, "dev": "d1", "seq": 7, "boot": "b1", "t0": T0}
    obj.update(envelope)
    obj["r"] = records
    if events is not None:
        obj["ev"] = events
    return cbor2.dumps(obj)


def _assert_raw_is_safe(errors: list[RecordError]) -> None:
    for error in errors:
        assert len(error.raw) <= RAW_MAX_CHARS
        assert error.raw.isascii() and "\x00" not in error.raw


# Each hostile record as JSON text, and the reason it is rejected with.
HOSTILE_JSON_RECORDS = [
    ("id a list", '[["s1"],0,20.5,0]', "bad_sensor_id"),
    ("id an object", '[{"s":"s1"},0,20.5,0]', "bad_sensor_id"),
    ("id lists and objects nested", '[[{"a":[{"b":[[]]}]}],0,20.5,0]', "bad_sensor_id"),
    ("id a list on a fault", '[["s1"],0,null,1,"crc"]', "bad_sensor_id"),
    ("id true", "[true,0,20.5,0]", "bad_sensor_id"),
    ("id a number of 400 digits", f"[{BIG},0,20.5,0]", "bad_sensor_id"),
    ("value of 400 digits", f'["s1",0,{BIG},0]', "bad_value"),
    ("value of minus 400 digits", f'["s1",0,-{BIG},0]', "bad_value"),
    ("value of 5000 digits", f'["s1",0,{HUGE},0]', "bad_value"),
    ("value 1e400", '["s1",0,1e400,0]', "not_a_number"),
    ("value -1e400", '["s1",0,-1e400,0]', "not_a_number"),
    ("value NaN", '["s1",0,NaN,0]', "not_a_number"),
    ("value Infinity", '["s1",0,Infinity,0]', "not_a_number"),
    ("value true", '["s1",0,true,0]', "bad_value"),
    ("value a list", '["s1",0,[20.5],0]', "bad_value"),
    ("value an object", '["s1",0,{"c":20.5},0]', "bad_value"),
    ("offset of 400 digits", f'["s1",{BIG},20.5,0]', "bad_time"),
    ("offset of 5000 digits", f'["s1",-{HUGE},20.5,0]', "bad_time"),
    ("offset true", '["s1",true,20.5,0]', "bad_time"),
    ("offset a list", '["s1",[0],20.5,0]', "bad_time"),
    ("quality of 400 digits", f'["s1",0,20.5,{BIG}]', "bad_quality"),
    ("quality true", '["s1",0,20.5,true]', "bad_quality"),
    ("quality 1e400", '["s1",0,20.5,1e400]', "bad_quality"),
    ("fault reason a list", '["s1",0,null,1,["crc"]]', "bad_fault_reason"),
    ("fault reason an object", '["s1",0,null,1,{"crc":1}]', "bad_fault_reason"),
    ("fault value of 5000 digits", f'["s3",0,{HUGE},1,"crc"]', None),  # a fault has no value
    ("record nested 500 deep", "[" * 500 + "]" * 500, "malformed_record"),
    ("record an object", '{"s1":[0,20.5,0]}', "malformed_record"),
    ("record a number of 5000 digits", HUGE, "malformed_record"),
]


@pytest.mark.parametrize(
    ("record", "reason"),
    [(c[1], c[2]) for c in HOSTILE_JSON_RECORDS],
    ids=[c[0] for c in HOSTILE_JSON_RECORDS],
)
def test_a_hostile_json_record_is_rejected_alone(record: str, reason: str | None) -> None:
    good, good2 = json.dumps(GOOD), json.dumps(GOOD2)
    batch = decode_batch(_json([good, record, good2]))
    if reason is None:
        assert batch.readings[1] == Reading("s3", T0 * 1000, None, 1, "crc")
        assert batch.errors == []
        return
    assert batch.readings == KEPT
    assert [(e.index, e.reason, e.section) for e in batch.errors] == [(1, reason, "r")]
    _assert_raw_is_safe(batch.errors)


HOSTILE_JSON_EVENTS = [
    ("value of 400 digits", f'["s1",0,"anomaly",{BIG},4.0]', "bad_value"),
    ("detail of 5000 digits", f'["s1",0,"anomaly",25.0,{HUGE}]', "bad_value"),
    ("value 1e400", '["s1",0,"anomaly",1e400,4.0]', "bad_value"),
    ("value NaN", '["s1",0,"anomaly",NaN,4.0]', "bad_value"),
    ("value true", '["s1",0,"anomaly",true,4.0]', "bad_value"),
    ("kind a list", '["s1",0,["anomaly"],25.0,4.0]', "bad_event_kind"),
    ("kind an object", '["s1",0,{"anomaly":1},25.0,4.0]', "bad_event_kind"),
    ("id an object", '[{"s":1},0,"anomaly",25.0,4.0]', "bad_sensor_id"),
    ("offset of 400 digits", f'["s1",{BIG},"anomaly",25.0,4.0]', "bad_time"),
    ("nested 500 deep", "[" * 500 + "]" * 500, "malformed_event"),
]


@pytest.mark.parametrize(
    ("event", "reason"),
    [(c[1], c[2]) for c in HOSTILE_JSON_EVENTS],
    ids=[c[0] for c in HOSTILE_JSON_EVENTS],
)
def test_a_hostile_json_event_is_rejected_alone(event: str, reason: str) -> None:
    batch = decode_batch(
        _json([json.dumps(GOOD), json.dumps(GOOD2)], [json.dumps(GOOD_EVENT), event])
    )
    assert batch.readings == KEPT
    assert batch.events == [Event("s1", T0 * 1000, "threshold_high", 31.5, 30.0)]
    assert [(e.index, e.reason, e.section) for e in batch.errors] == [(1, reason, "ev")]
    _assert_raw_is_safe(batch.errors)


# Envelopes no batch can be taken from, each refused with its reason (and nothing else raised).
HOSTILE_JSON_ENVELOPES = [
    ("seq 2**63", _json([], seq=str(2**63)), "bad_seq"),
    ("seq of 400 digits", _json([], seq=BIG), "bad_seq"),
    ("seq of 5000 digits", _json([], seq=HUGE), "bad_seq"),
    ("seq true", _json([], seq="true"), "bad_seq"),
    ("seq 1e400", _json([], seq="1e400"), "bad_seq"),
    ("t0 after the year 9999", _json([], t0=str(MAX_T0_S + 1)), "bad_time"),
    ("t0 of 400 digits", _json([], t0=BIG), "bad_time"),
    ("t0 of 5000 digits", _json([], t0=HUGE), "bad_time"),
    ("t0 true", _json([], t0="true"), "bad_time"),
    ("device id a list", _json([], dev='["d1"]'), "bad_device_id"),
    ("device id an object", _json([], dev='{"d":"d1"}'), "bad_device_id"),
    ("device id of 5000 digits", _json([], dev=HUGE), "bad_device_id"),
    ("boot id an object", _json([], boot='{"b":1}'), "bad_boot_id"),
    ("version of 5000 digits", _json([], v=HUGE), "unsupported_version"),
    ("version nested", _json([], v="[[[[1]]]]"), "unsupported_version"),
    ("readings nested beyond orjson's depth", _json(["[" * 30000 + "]" * 30000]), "malformed_json"),
    ("nested with a NaN", _json(["[" * 3000 + "]" * 3000, '["s1",0,NaN,0]']), "malformed_json"),
    (
        "objects nested with a NaN",
        b'{"v":NaN,"x":' + b'{"a":' * 3000 + b"1" + b"}" * 3001,
        "malformed_json",
    ),
    ("not UTF-8 with a NaN", b'{"v":NaN,"dev":"\xff"}', "malformed_json"),
]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(c[1], c[2]) for c in HOSTILE_JSON_ENVELOPES],
    ids=[c[0] for c in HOSTILE_JSON_ENVELOPES],
)
def test_a_hostile_json_envelope_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(BatchError) as info:
        decode_batch(payload)
    assert info.value.reason == reason
    assert len(info.value.detail) <= 200 and info.value.detail.isascii()


def test_the_bounds_themselves_are_accepted() -> None:
    batch = decode_batch(_json([json.dumps(GOOD)], seq=str(MAX_SEQ), t0=str(MAX_T0_S)))
    assert (batch.seq, batch.t0) == (MAX_SEQ, MAX_T0_S)
    assert batch.readings == [Reading("s1", MAX_T0_S * 1000, 20.5, 0, None)]


def test_a_batch_nested_as_deep_as_orjson_reads_keeps_its_good_records() -> None:
    deep = "[" * 1000 + "]" * 1000
    batch = decode_batch(_json([json.dumps(GOOD), deep, json.dumps(GOOD2)]))
    assert batch.readings == KEPT
    assert [(e.index, e.reason) for e in batch.errors] == [(1, "malformed_record")]
    _assert_raw_is_safe(batch.errors)


def test_a_deep_record_beside_a_nan_is_rejected_alone() -> None:
    # NaN sends the batch to the standard library's parser, which reads this depth too.
    deep = "[" * 500 + "]" * 500
    batch = decode_batch(_json([json.dumps(GOOD), deep, '["s1",0,NaN,0]', json.dumps(GOOD2)]))
    assert batch.readings == KEPT
    assert [(e.index, e.reason) for e in batch.errors] == [
        (1, "malformed_record"),
        (2, "not_a_number"),
    ]


def _cyclic() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


_NOT_UTF8 = "NOT-UTF8-PLACEHOLDER"
_SELF_REFERENCE = "SELF-REFERENCE-PLACEHOLDER"
# A list whose one item is itself: tag 28 marks it shareable, tag 29 refers back to it.
_SELF_REFERENCING_LIST = b"\xd8\x1c\x81\xd8\x1d\x00"

# Each hostile record as a Python value cbor2 encodes (with tags where the type needs one).
HOSTILE_CBOR_RECORDS = [
    ("bignum value", ["s1", 0, 2**70, 0], "bad_value"),
    ("negative bignum value", ["s1", 0, -(2**70), 0], "bad_value"),
    ("bignum of 5000 digits", ["s1", 0, 10**5000, 0], "bad_value"),
    ("bignum offset", ["s1", 2**70, 20.5, 0], "bad_time"),
    ("bignum quality", ["s1", 0, 20.5, 2**70], "bad_quality"),
    (
        "datetime id",
        [datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), 0, 20.5, 0],
        "bad_sensor_id",
    ),
    (
        "datetime value",
        ["s1", 0, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), 0],
        "bad_value",
    ),
    ("decimal value", ["s1", 0, decimal.Decimal("20.5"), 0], "bad_value"),
    ("fraction value", ["s1", 0, fractions.Fraction(41, 2), 0], "bad_value"),
    ("set value", ["s1", 0, {1, 2}, 0], "bad_value"),
    ("set id", [frozenset({"s1"}), 0, 20.5, 0], "bad_sensor_id"),
    ("undefined value", ["s1", 0, cbor2.undefined, 0], "bad_value"),
    ("simple value", ["s1", 0, cbor2.CBORSimpleValue(99), 0], "bad_value"),
    ("bytes id", [b"s1", 0, 20.5, 0], "bad_sensor_id"),
    ("bytes with NUL as id", [b"\x00\x00", 0, 20.5, 0], "bad_sensor_id"),
    ("bytes fault reason", ["s1", 0, None, 1, b"crc"], "bad_fault_reason"),
    ("unknown tag as id", [cbor2.CBORTag(4711, "s1"), 0, 20.5, 0], "bad_sensor_id"),
    ("unknown tag as value", ["s1", 0, cbor2.CBORTag(4711, 20.5), 0], "bad_value"),
    ("uuid value", ["s1", 0, uuid.UUID(int=1), 0], "bad_value"),
    ("regular expression id", [re.compile("(a+)+$"), 0, 20.5, 0], "bad_sensor_id"),
    ("ip address value", ["s1", 0, ipaddress.ip_address("127.0.0.1"), 0], "bad_value"),
    ("self-referencing list as id", [_SELF_REFERENCE, 0, 20.5, 0], "bad_sensor_id"),
    ("record nested 10 deep", [[[[[[[[[["s1"]]]]]]]]]], "malformed_record"),
    ("map as record with an integer value", {"s": 1}, "malformed_record"),
    ("id not UTF-8", [_NOT_UTF8, 0, 20.5, 0], "bad_sensor_id"),
    ("NaN value", ["s1", 0, float("nan"), 0], "not_a_number"),
    ("infinite value", ["s1", 0, float("-inf"), 0], "not_a_number"),
]


def _cbor_bytes(records: list[Any], **envelope: Any) -> bytes:
    payload = cbor2.dumps(
        {"v": 1, "dev": "d1", "seq": 7, "boot": "b1", "t0": T0, "r": records, **envelope}
    )
    # A text string whose bytes are not UTF-8: the same length, so its header stays right.
    payload = payload.replace(_NOT_UTF8.encode(), b"\xff\xfe" * (len(_NOT_UTF8) // 2))
    # An array counts items, not bytes: one item can be swapped for another of any length.
    return payload.replace(cbor2.dumps(_SELF_REFERENCE), _SELF_REFERENCING_LIST)


@pytest.mark.parametrize(
    ("record", "reason"),
    [(c[1], c[2]) for c in HOSTILE_CBOR_RECORDS],
    ids=[c[0] for c in HOSTILE_CBOR_RECORDS],
)
def test_a_hostile_cbor_record_is_rejected_alone(record: Any, reason: str) -> None:
    batch = decode_object(parse_cbor(_cbor_bytes([GOOD, record, GOOD2])))
    assert batch.readings == KEPT
    assert [(e.index, e.reason, e.section) for e in batch.errors] == [(1, reason, "r")]
    _assert_raw_is_safe(batch.errors)


HOSTILE_CBOR_ENVELOPES = [
    ("bignum seq", _cbor_bytes([], seq=2**64), "bad_seq"),
    ("seq 2**64-1, no tag", _cbor_bytes([], seq=2**64 - 1), "bad_seq"),
    ("seq 2**63", _cbor_bytes([], seq=2**63), "bad_seq"),
    ("bignum t0", _cbor_bytes([], t0=2**70), "bad_time"),
    (
        "datetime t0",
        _cbor_bytes([], t0=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)),
        "bad_time",
    ),
    ("device id bytes", _cbor_bytes([], dev=b"d1"), "bad_device_id"),
    ("device id a tag", _cbor_bytes([], dev=cbor2.CBORTag(4711, "d1")), "bad_device_id"),
    ("batch inside a tag", cbor2.dumps(cbor2.CBORTag(4711, {"v": 1})), "malformed_batch"),
    ("batch as a set", cbor2.dumps({"v", "dev"}), "malformed_batch"),
    ("integer map key", cbor2.dumps({1: 2, "v": 1}), "malformed_cbor"),
    ("array map key", cbor2.dumps({(1, 2): 2, "v": 1}), "malformed_cbor"),
    ("nested 30000 deep", b"\x81" * 30000 + b"\x80", "malformed_cbor"),
    (
        "readings nested 20 deep",
        _cbor_bytes([[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]),
        "malformed_cbor",
    ),
    ("truncated", _cbor_bytes([GOOD])[:-3], "malformed_cbor"),
    ("an array of a billion items announced", b"\x9a\x3b\x9a\xca\x00", "malformed_cbor"),
    ("oversize", b"\x40" * (p.MAX_PAYLOAD_BYTES + 1), "oversize"),
]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(c[1], c[2]) for c in HOSTILE_CBOR_ENVELOPES],
    ids=[c[0] for c in HOSTILE_CBOR_ENVELOPES],
)
def test_a_hostile_cbor_envelope_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(BatchError) as info:
        decode_object(parse_cbor(payload))
    assert info.value.reason == reason
    assert len(info.value.detail) <= 200 and info.value.detail.isascii()


def _deep_list(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


@pytest.mark.parametrize(
    "record",
    [
        _deep_list(100_000),
        _cyclic(),
        10**5000,
        "\x00" * 10_000,
        "\ud800 lone surrogate",
        list(range(100_000)),
        {str(i): [i] * 100 for i in range(1000)},
        [b"\x00\xff" * 5000, frozenset(range(1000)), cbor2.undefined, object()],
    ],
    ids=["deep", "cyclic", "5000 digits", "NULs", "surrogate", "long", "wide", "odd types"],
)
def test_the_raw_text_of_any_record_is_bounded_ascii_and_never_raises(record: Any) -> None:
    raw = _raw(record)
    assert 0 < len(raw) <= RAW_MAX_CHARS
    assert raw.isascii() and "\x00" not in raw


def test_the_raw_text_of_an_ordinary_record_is_its_json() -> None:
    record = ["s1", -250, float("nan"), 1, "crc", {"a": [None, True]}]
    assert _raw(record) == json.dumps(record, separators=(",", ":"), allow_nan=True)


# Two readings of one sensor at one time.


def _decode(records: list[list[Any]]) -> DecodedBatch:
    return decode_object({"v": 1, "dev": "d1", "seq": 1, "boot": "b1", "t0": T0, "r": records})


def test_a_second_value_for_the_same_sensor_and_time_is_rejected_and_the_first_kept() -> None:
    batch = _decode([["s1", 0, 20.5, 0], ["s2", 0, 20.5, 0], ["s1", 0, 21.0, 0]])
    assert [(r.sensor_id, r.value) for r in batch.readings] == [("s1", 20.5), ("s2", 20.5)]
    assert [(e.index, e.reason) for e in batch.errors] == [(2, "conflicting_duplicate")]
    assert batch.errors[0].raw == '["s1",0,21.0,0]'


def test_an_identical_repeat_is_kept_for_the_writer_to_count_as_a_duplicate() -> None:
    batch = _decode([["s1", 0, 20.5, 0], ["s1", 0, 20.5, 0]])
    assert len(batch.readings) == 2 and batch.errors == []


@pytest.mark.parametrize(
    "records",
    [
        # time goes back across sensors, then the sensor repeats itself
        [["s1", 0, 1.0, 0], ["s2", 1000, 1.0, 0], ["s1", 500, 1.0, 0], ["s1", 0, 2.0, 0]],
        # grouped by sensor, then a repeat within a group
        [["s1", 0, 1.0, 0], ["s1", 1000, 1.0, 0], ["s2", 0, 1.0, 0], ["s1", 1000, 2.0, 0]],
        # a probe fault at the time of a temperature
        [["s1", 0, 1.0, 0], ["s2", 0, 1.0, 0], ["s1", 0, None, 1, "crc"]],
        # a temperature at the time of a probe fault
        [["s1", 0, None, 1, "crc"], ["s1", 0, 1.0, 0]],
        # the quality flag differs
        [["s1", 0, 1.0, 0], ["s1", 0, 1.0, 2]],
    ],
    ids=["time goes back", "grouped by sensor", "fault after value", "value after fault", "flag"],
)
def test_conflicting_duplicates_are_found_in_any_order(records: list[list[Any]]) -> None:
    batch = _decode(records)
    assert [(e.index, e.reason) for e in batch.errors] == [
        (len(records) - 1, "conflicting_duplicate")
    ]
    assert len(batch.readings) == len(records) - 1


def _model(records: list[list[Any]]) -> tuple[list[int], list[int]]:
    """Indexes kept and indexes rejected as conflicting, the obvious way."""
    first: dict[tuple[str, int], tuple[Any, ...]] = {}
    kept, conflicting = [], []
    for i, (sensor, dt, value, quality) in enumerate(records):
        content = (None if quality & 1 else float(value), quality)
        earlier = first.setdefault((sensor, dt), content)
        (kept if earlier == content else conflicting).append(i)
    return kept, conflicting


_small_records = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2", "s3"]),
        st.integers(0, 6).map(lambda t: t * 1000),
        st.sampled_from([1.0, 2.0]),
        st.sampled_from([0, 1]),
    ).map(lambda r: [r[0], r[1], r[2], r[3], "crc"] if r[3] else list(r)),
    max_size=40,
)


@fuzz_settings(300)
@given(_small_records)
def test_duplicates_are_found_as_a_plain_set_of_sensor_and_time_finds_them(
    records: list[list[Any]],
) -> None:
    batch = _decode(records)
    kept, conflicting = _model([r[:4] for r in records])
    assert [(r.sensor_id, r.time_ms - T0 * 1000) for r in batch.readings] == [
        (records[i][0], records[i][1]) for i in kept
    ]
    assert [(e.index, e.reason) for e in batch.errors] == [
        (i, "conflicting_duplicate") for i in conflicting
    ]


# A mutation fuzzer over valid batches: whatever is put anywhere, the decoder either refuses the
# batch with a BatchError or accounts for every record as a reading or a reject.

BATCH_REASONS = {
    "malformed_batch",
    "unsupported_version",
    "bad_device_id",
    "bad_seq",
    "bad_boot_id",
    "bad_time",
    "too_many_records",
    "malformed_json",
    "malformed_cbor",
}

STRUCTURE_DETAILS = {"not an object", "r and ev must be lists"}


def _assert_accounted_for(obj: Any) -> None:
    """decode_object either refuses ``obj`` with a known reason or returns one outcome per
    record: a reading (or event) or a RecordError."""
    try:
        batch = decode_object(obj)
    except BatchError as exc:
        assert exc.reason in BATCH_REASONS, exc
        # Not the last resort that turns an exception of ours into a refusal.
        assert exc.reason != "malformed_batch" or exc.detail in STRUCTURE_DETAILS, exc
        return
    for section, kept in (("r", batch.readings), ("ev", batch.events)):
        refused = [e.index for e in batch.errors if e.section == section]
        assert refused == sorted(set(refused))
        assert len(kept) + len(refused) == len(obj.get(section, []))
    _assert_raw_is_safe(batch.errors)
    for reading in batch.readings:
        assert type(reading.sensor_id) is str and type(reading.time_ms) is int
        assert reading.value is None or type(reading.value) is float


@fuzz_settings(400)
@given(mutated_batches(JSON_VALUES, T0))
def test_a_mutated_batch_is_decoded_or_refused_from_objects_and_json(batch: dict[str, Any]) -> None:
    _assert_accounted_for(batch)
    payload = json.dumps(batch, allow_nan=True).encode()
    try:
        parsed = parse_payload(payload)
    except BatchError as exc:
        assert exc.reason in ("malformed_json", "oversize")
        return
    _assert_accounted_for(parsed)


@fuzz_settings(300)
@given(mutated_batches(CBOR_VALUES, T0))
def test_a_mutated_batch_is_decoded_or_refused_from_cbor(batch: dict[str, Any]) -> None:
    _assert_accounted_for(batch)
    try:
        parsed = parse_cbor(cbor2.dumps(batch))
    except BatchError as exc:
        assert exc.reason in ("malformed_cbor", "oversize")
        return
    _assert_accounted_for(parsed)


@fuzz_settings(200)
@given(st.binary(max_size=300), st.integers(0, 200))
def test_mutated_bytes_are_decoded_or_refused(noise: bytes, at: int) -> None:
    for encoded in (
        p.encode_batch("d1", 7, "b1", T0, [("s1", 0, 20.5, 0), ("s2", 0, None, 1, "crc")]),
        cbor2.dumps(json.loads(p.encode_batch("d1", 7, "b1", T0, [("s1", 0, 20.5, 0)]))),
    ):
        payload = encoded[:at] + noise + encoded[at:]
        for parse in (parse_payload, parse_cbor):
            try:
                obj = parse(payload)
            except BatchError:
                continue
            _assert_accounted_for(obj)
