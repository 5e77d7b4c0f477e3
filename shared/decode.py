"""Decoding and structural validation of protocol v1 batches (CPython only).

A bad record never sinks its batch: :func:`decode_batch` returns the good readings together with
one :class:`RecordError` per bad record. Only a batch whose envelope is unusable (not JSON or
CBOR, another version, no device id, too large) raises :class:`BatchError`, and nothing a sender
can write raises anything else: every field is bounded here, where it is decoded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cbor2
import orjson

from shared import protocol as p

_FAULTS = frozenset(p.FAULT_REASONS)
_EVENTS = frozenset(p.EVENT_KINDS)
_QUALITY_MASK = p.Q_PROBE_FAULT | p.Q_CLOCK_UNSYNCED
# Offsets beyond a day would mean the sender batched a day of data under one t0: refuse.
_MAX_DT_MS = 86_400_000
# seq is stored as a signed 64-bit integer (devices.last_seq).
MAX_SEQ = 2**63 - 1
# 9999-12-31T23:59:59Z: no clock is later, and every time derived from t0 stays far inside
# the database's timestamp range (the clock checks in the collector then decide plausibility).
MAX_T0_S = 253_402_300_799
# A batch nests three levels (object, list, record); CBOR nested deeper than this is refused
# while decoding. JSON is bounded by its parsers: orjson refuses more than 1024 levels, and the
# standard library's C parser raises RecursionError at the interpreter's recursion limit (cheaply,
# and safely even on a thread with a small stack), which becomes malformed_json. Nothing after
# parsing recurses into a record, so a deep one is only that record's malformed_record.
MAX_NESTING = 16
# The raw text kept with a rejected record: enough to see what was sent, never unbounded.
RAW_MAX_CHARS = 1024
_RAW_MAX_DEPTH = 6


class BatchError(ValueError):
    """The batch as a whole cannot be used; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Reading(NamedTuple):
    # A named tuple, not a dataclass: ingest builds hundreds of thousands a second.
    sensor_id: str
    time_ms: int  # UTC milliseconds since 1970
    value: float | None  # °C; None for a probe fault
    quality: int
    fault: str | None = None


@dataclass(slots=True, frozen=True)
class Event:
    sensor_id: str
    time_ms: int
    kind: str
    value: float | None
    detail: float | None


@dataclass(slots=True, frozen=True)
class RecordError:
    index: int  # position in the batch's "r" (or "ev") list
    reason: str
    raw: str  # the record as JSON text (bounded, see RAW_MAX_CHARS)
    section: str = "r"


@dataclass(slots=True)
class DecodedBatch:
    device_id: str
    seq: int
    boot_id: str
    t0: int
    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


class Unusable:
    """Stands in for a parsed value the protocol has no use for (a CBOR tag, an integer beyond a
    float's range): it fails every field check, so the record holding it is rejected alone."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return "<" + self.what + ">"


# Sensor ids already seen valid; bounded so a sender inventing ids cannot grow it without end.
_KNOWN_IDS: set[str] = set()
_KNOWN_IDS_MAX = 100_000


def _remember_id(sensor_id: Any) -> bool:
    if not p.valid_id(sensor_id):
        return False
    if len(_KNOWN_IDS) >= _KNOWN_IDS_MAX:
        _KNOWN_IDS.clear()
    _KNOWN_IDS.add(sensor_id)
    return True


def _is_int(x: Any) -> bool:
    return type(x) is int


def _float(x: Any) -> float | None:
    """A finite float for a JSON/CBOR number, or None for anything else (including an integer
    too large for a float)."""
    if type(x) is float:
        return x if math.isfinite(x) else None
    if type(x) is int:
        try:
            return float(x)
        except OverflowError:
            return None
    return None


def _number_or_none(x: Any) -> tuple[bool, float | None]:
    if x is None:
        return True, None
    value = _float(x)
    return value is not None, value


def _raw(record: Any, limit: int = RAW_MAX_CHARS) -> str:
    """``record`` as compact JSON text, as the sender would have written it, cut to ``limit``
    characters; ASCII only (a NUL or lone surrogate is escaped). It walks at most a few levels
    and ``limit`` items deep and never raises: this is evidence, never a reason to fail."""
    out: list[str] = []
    try:
        _render(record, out, limit, 0)
    except Exception:  # a last resort; _render is written not to raise
        out.append("...")
    return "".join(out)[:limit]


def _render(x: Any, out: list[str], budget: int, depth: int) -> int:
    """Append ``x`` to ``out`` spending about ``budget`` characters at most; the budget left."""
    if budget <= 0:
        out.append("...")
        return budget
    kind = type(x)
    if x is None:
        text = "null"
    elif kind is bool:
        text = "true" if x else "false"
    elif kind is int:
        # str() of a huge integer is slow, and above 4,300 digits Python refuses it.
        bits = x.bit_length()
        text = str(x) if bits <= 512 else "<integer of " + str(bits) + " bits>"
    elif kind is float:
        if math.isfinite(x):
            text = repr(x)
        else:
            text = "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")
    elif kind is str:
        text = json.dumps(x[:budget])
    elif kind is list or kind is tuple or kind is set or kind is frozenset:
        return _render_container(x, False, out, budget, depth)
    elif isinstance(x, Mapping):
        return _render_container(x, True, out, budget, depth)
    elif kind is bytes or kind is bytearray:
        text = repr(bytes(x[:budget]))
    elif kind is Unusable:
        text = repr(x)
    else:
        text = "<" + kind.__name__ + ">"
    out.append(text)
    return budget - len(text)


def _render_container(x: Any, mapping: bool, out: list[str], budget: int, depth: int) -> int:
    opening, closing = ("{", "}") if mapping else ("[", "]")
    if depth >= _RAW_MAX_DEPTH:
        out.append(opening + "..." + closing)
        return budget - 5
    out.append(opening)
    budget -= 2
    first = True
    for item in x.items() if mapping else x:
        if budget <= 0:
            out.append("...")
            break
        if not first:
            out.append(",")
            budget -= 1
        first = False
        if mapping:
            budget = _render(item[0], out, budget, depth + 1)
            out.append(":")
            budget = _render(item[1], out, budget - 1, depth + 1)
        else:
            budget = _render(item, out, budget, depth + 1)
    out.append(closing)
    return budget


def _text(detail: str, limit: int = 200) -> str:
    """An error message as printable ASCII (a parser's message may quote the payload)."""
    return (
        detail[:limit].encode("ascii", "backslashreplace").decode("ascii").replace("\x00", "\\x00")
    )


_INF = float("inf")


def _parse_int(text: str) -> Any:
    # As orjson does, an integer outside 64 bits becomes a float, so both parsers give one
    # batch the same types; one beyond a float's range is unusable (a per-record bad_value)
    # rather than a 4,300-digit Python int, which Python itself refuses to build.
    if len(text) < 19:
        return int(text)
    if len(text) <= 21:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    number = float(text)
    if number in (_INF, -_INF):
        return Unusable("integer of " + str(len(text)) + " digits")
    return number


def parse_payload(payload: bytes, *, max_bytes: int = p.MAX_PAYLOAD_BYTES) -> Any:
    """JSON text to Python objects, refusing oversize or undecodable payloads."""
    if len(payload) > max_bytes:
        raise BatchError("oversize", f"{len(payload)} bytes > {max_bytes}")
    try:
        return orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError):
        pass
    # orjson is strict JSON. The standard library also reads NaN and Infinity, which some
    # senders write: parsed, they become per-record rejects instead of sinking the batch.
    try:
        return json.loads(payload, parse_int=_parse_int)
    except RecursionError:
        # Scanning the depth beforehand would cost 7 ms for 64 KiB of brackets; the parser's
        # own guard stops in 0.1 ms.
        raise BatchError("malformed_json", "nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise BatchError("malformed_json", _text(str(exc))) from None


def _cbor_tag(tag: cbor2.CBORTag, immutable: bool) -> Unusable:
    return Unusable("tag " + str(tag.tag))


def _refused_tag(number: int) -> Any:
    return lambda value, immutable: Unusable("tag " + str(number))


# The tags cbor2 would otherwise turn into objects of its own (bignums, dates, decimals, sets,
# regular expressions, MIME messages, shared references that make cycles...). The protocol uses
# no tag; each becomes an Unusable, so only the record holding it is rejected.
_CBOR_BUILTIN_TAGS = (
    *(0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261),
    *(1004, 43000, 55799),
)
_CBOR_SEMANTIC = {number: _refused_tag(number) for number in _CBOR_BUILTIN_TAGS}


def parse_cbor(payload: bytes, *, max_bytes: int = p.MAX_PAYLOAD_BYTES) -> Any:
    """CBOR to Python objects with plain types only (tags refused), nesting bounded."""
    if len(payload) > max_bytes:
        raise BatchError("oversize", f"{len(payload)} bytes > {max_bytes}")
    try:
        return cbor2.loads(
            payload,
            tag_hook=_cbor_tag,
            semantic_decoders=_CBOR_SEMANTIC,
            max_depth=MAX_NESTING,
            # Map keys other than strings could be crafted to collide in a hash table.
            strict_hashable_types=True,
            # An id that is not UTF-8 is a bad id of one record, not a broken batch.
            str_errors="replace",
        )
    except Exception as exc:  # cbor2 raises several types for bad input
        raise BatchError("malformed_cbor", _text(str(exc))) from None


def decode_batch(payload: bytes, *, max_bytes: int = p.MAX_PAYLOAD_BYTES) -> DecodedBatch:
    """Decode a JSON batch; see :func:`decode_object`."""
    return decode_object(parse_payload(payload, max_bytes=max_bytes))


def decode_object(obj: Any) -> DecodedBatch:
    """Validate an already parsed batch (from JSON or CBOR) record by record.

    Raises only :class:`BatchError`, whatever ``obj`` holds.
    """
    try:
        return _decode(obj)
    except BatchError:
        raise
    except Exception as exc:  # a gap in the checks below must still end as a refusal
        raise BatchError("malformed_batch", type(exc).__name__) from None


def _reading(rec: Any, t0_ms: int) -> Reading | str:
    """A Reading, or the reason the record is not one."""
    if type(rec) is not list or not 4 <= len(rec) <= 5:
        return "malformed_record"
    sensor_id, dt, value, quality = rec[0], rec[1], rec[2], rec[3]
    if not p.valid_id(sensor_id):
        return "bad_sensor_id"
    if not _is_int(dt) or not -_MAX_DT_MS <= dt <= _MAX_DT_MS:
        return "bad_time"
    if not _is_int(quality) or quality & ~_QUALITY_MASK:
        return "bad_quality"
    fault = rec[4] if len(rec) == 5 else None
    if quality & p.Q_PROBE_FAULT:
        if type(fault) is not str or fault not in _FAULTS:
            return "bad_fault_reason"
        # A fault's value is not a temperature, whatever the sender put there.
        return Reading(sensor_id, t0_ms + dt, None, quality, fault)
    if fault is not None:
        return "malformed_record"
    if value is None:
        return "not_a_number"
    if type(value) is float:
        if not math.isfinite(value):
            return "not_a_number"
        return Reading(sensor_id, t0_ms + dt, value, quality, None)
    number = _float(value) if type(value) is int else None
    if number is None:
        return "bad_value"  # a string, a bool, an integer beyond a float's range...
    return Reading(sensor_id, t0_ms + dt, number, quality, None)


def _event(rec: Any, t0_ms: int) -> Event | str:
    if type(rec) is not list or len(rec) != 5:
        return "malformed_event"
    sensor_id, dt, kind = rec[0], rec[1], rec[2]
    if not p.valid_id(sensor_id):
        return "bad_sensor_id"
    if not _is_int(dt) or not -_MAX_DT_MS <= dt <= _MAX_DT_MS:
        return "bad_time"
    if type(kind) is not str or kind not in _EVENTS:
        return "bad_event_kind"
    ok_v, value = _number_or_none(rec[3])
    ok_d, detail = _number_or_none(rec[4])
    if not (ok_v and ok_d):
        return "bad_value"
    return Event(sensor_id, t0_ms + dt, kind, value, detail)


_NEVER = -(2**63)  # earlier than any reading's time


def _latest_times(readings: list[Reading]) -> dict[str, int]:
    latest: dict[str, int] = {}
    for r in readings:
        if r[1] > latest.get(r[0], _NEVER):
            latest[r[0]] = r[1]
    return latest


def _admit(
    reading: Reading,
    index: int,
    rec: Any,
    readings: list[Reading],
    errors: list[RecordError],
    seen: dict[tuple[str, int], Reading] | None,
) -> dict[tuple[str, int], Reading]:
    """Keep a reading that may repeat an earlier one's sensor and time; returns the map of every
    (sensor, time) kept, built on the first call from the readings kept so far."""
    if seen is None:
        seen = {(r[0], r[1]): r for r in readings}
    key = (reading[0], reading[1])
    earlier = seen.get(key)
    if earlier is None:
        seen[key] = reading
    elif earlier[2:] != reading[2:]:
        # Two different values for one sensor at one time: the first sent is kept; the second
        # would otherwise vanish silently as a "duplicate" of it.
        errors.append(RecordError(index, "conflicting_duplicate", _raw(rec)))
        return seen
    # An identical repeat is kept: the writer counts it as a duplicate, as for a re-sent batch.
    readings.append(reading)
    return seen


def _decode(obj: Any) -> DecodedBatch:
    if not isinstance(obj, dict):
        raise BatchError("malformed_batch", "not an object")
    version: Any = obj.get("v")
    # `true` and `1.0` compare equal to 1 in Python but are not version 1.
    if not _is_int(version) or version != p.PROTOCOL_VERSION:
        raise BatchError("unsupported_version", _raw(version, 40))
    device_id: Any = obj.get("dev")
    seq: Any = obj.get("seq")
    boot_id: Any = obj.get("boot")
    t0: Any = obj.get("t0")
    if not p.valid_id(device_id):
        raise BatchError("bad_device_id", _raw(device_id, 80))
    if not _is_int(seq) or not 0 <= seq <= MAX_SEQ:
        raise BatchError("bad_seq", _raw(seq, 40))
    if not p.valid_id(boot_id):
        raise BatchError("bad_boot_id", _raw(boot_id, 80))
    if not _is_int(t0) or not 0 <= t0 <= MAX_T0_S:
        raise BatchError("bad_time", "t0 " + _raw(t0, 40))
    records: Any = obj.get("r", [])
    events: Any = obj.get("ev", [])
    if type(records) is not list or type(events) is not list:
        raise BatchError("malformed_batch", "r and ev must be lists")
    if len(records) > p.MAX_READINGS_PER_BATCH or len(events) > p.MAX_EVENTS_PER_BATCH:
        raise BatchError("too_many_records", f"{len(records)} readings, {len(events)} events")

    batch = DecodedBatch(device_id, seq, boot_id, t0)
    t0_ms = t0 * 1000
    readings, errors = batch.readings, batch.errors
    append_reading, append_error = readings.append, errors.append
    known_ids = _KNOWN_IDS
    isfinite = math.isfinite
    new_tuple = tuple.__new__
    # Two readings of one sensor at one time are found without a set of every (sensor, time),
    # which would cost more than the rest of this loop, in three steps from cheap to thorough:
    # while times do not decrease (how senders write batches), a reading later than the one
    # before is new, and one at the same time is checked against the sensors of that instant;
    # once time goes back, against the latest time of its sensor; and once that goes back too
    # (or a repeat turns up), against every (sensor, time) kept (_admit).
    prev_t = _NEVER
    instant_first: str | None = None  # the first sensor at prev_t
    instant: set[str] | None = None  # all sensors at prev_t, once there are two
    latest: dict[str, int] | None = None
    seen: dict[tuple[str, int], Reading] | None = None
    reading: Any
    for i, rec in enumerate(records):
        # Fast path for the common case, a valid temperature: the same checks as _reading,
        # inlined (this loop runs for every reading the collector ingests).
        if type(rec) is list and len(rec) == 4:
            sensor_id, dt, value, quality = rec
            if (
                type(dt) is int
                and -_MAX_DT_MS <= dt <= _MAX_DT_MS
                and (quality == 0 or quality == p.Q_CLOCK_UNSYNCED)
                and type(quality) is int
                # An integer beyond a float's range would raise in isfinite: the slow path.
                and (type(value) is float or (type(value) is int and -1e308 < value < 1e308))
                and isfinite(value)
                # The type first: a list or an object cannot be looked up in a set.
                and type(sensor_id) is str
                and (sensor_id in known_ids or _remember_id(sensor_id))
            ):
                t = t0_ms + dt
                # tuple.__new__ skips the named tuple's Python-level constructor.
                reading = new_tuple(Reading, (sensor_id, t, float(value), quality, None))
            else:
                reading = None
        else:
            reading = None
        if reading is None:
            try:
                result = _reading(rec, t0_ms)
            except Exception:  # a gap in the checks: this record's problem, not the batch's
                result = "malformed_record"
            if type(result) is str:
                append_error(RecordError(i, result, _raw(rec)))
                continue
            reading = result
            sensor_id, t = reading[0], reading[1]
        if seen is None:
            if latest is None:
                if t > prev_t:
                    prev_t, instant_first, instant = t, sensor_id, None
                    append_reading(reading)
                    continue
                if t == prev_t:
                    if instant is None:
                        if sensor_id != instant_first:
                            instant = {instant_first, sensor_id}  # type: ignore[arg-type]
                            append_reading(reading)
                            continue
                    elif sensor_id not in instant:
                        instant.add(sensor_id)
                        append_reading(reading)
                        continue
                else:
                    latest = _latest_times(readings)
            if latest is not None and t > latest.get(sensor_id, _NEVER):
                latest[sensor_id] = t
                append_reading(reading)
                continue
        seen = _admit(reading, i, rec, readings, errors, seen)
    for i, rec in enumerate(events):
        try:
            ev = _event(rec, t0_ms)
        except Exception:
            ev = "malformed_event"
        if isinstance(ev, str):
            append_error(RecordError(i, ev, _raw(rec), "ev"))
        else:
            batch.events.append(ev)
    return batch


def decode_ack(payload: bytes) -> dict[str, Any]:
    """The collector's acknowledgement: ``seq``, ``boot``, ``stored``, ``dup``, ``rej``."""
    obj = json.loads(payload)
    if not isinstance(obj, dict) or obj.get("v") != p.PROTOCOL_VERSION:
        raise BatchError("malformed_ack")
    return obj
