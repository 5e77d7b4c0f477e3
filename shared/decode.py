"""Decoding and structural validation of protocol v1 batches (CPython only).

A bad record never sinks its batch: :func:`decode_batch` returns the good readings together with
one :class:`RecordError` per bad record. Only a batch whose envelope is unusable (not JSON, another
version, no device id, too large) raises :class:`BatchError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from shared import protocol as p

_FAULTS = frozenset(p.FAULT_REASONS)
_EVENTS = frozenset(p.EVENT_KINDS)
_QUALITY_MASK = p.Q_PROBE_FAULT | p.Q_CLOCK_UNSYNCED
# Offsets beyond a day would mean the sender batched a day of data under one t0: refuse.
_MAX_DT_MS = 86_400_000


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
    raw: str  # the record as JSON text
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


def _number_or_none(x: Any) -> tuple[bool, float | None]:
    if x is None:
        return True, None
    if type(x) in (int, float) and math.isfinite(x):
        return True, float(x)
    return False, None


def _raw(record: Any) -> str:
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=True)[:1024]
    except (TypeError, ValueError):
        return repr(record)[:1024]


def _reading(rec: Any, t0_ms: int) -> Reading | str:
    """A Reading, or the reason the record is not one."""
    if not isinstance(rec, list) or not 4 <= len(rec) <= 5:
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
        if fault not in _FAULTS:
            return "bad_fault_reason"
        # A fault's value is not a temperature, whatever the sender put there.
        return Reading(sensor_id, t0_ms + dt, None, quality, fault)
    if fault is not None:
        return "malformed_record"
    if type(value) not in (int, float):
        return "not_a_number" if value is None or isinstance(value, float) else "bad_value"
    if not math.isfinite(value):
        return "not_a_number"
    return Reading(sensor_id, t0_ms + dt, float(value), quality, None)


def _event(rec: Any, t0_ms: int) -> Event | str:
    if not isinstance(rec, list) or len(rec) != 5:
        return "malformed_event"
    sensor_id, dt, kind = rec[0], rec[1], rec[2]
    if not p.valid_id(sensor_id):
        return "bad_sensor_id"
    if not _is_int(dt) or not -_MAX_DT_MS <= dt <= _MAX_DT_MS:
        return "bad_time"
    if kind not in _EVENTS:
        return "bad_event_kind"
    ok_v, value = _number_or_none(rec[3])
    ok_d, detail = _number_or_none(rec[4])
    if not (ok_v and ok_d):
        return "bad_value"
    return Event(sensor_id, t0_ms + dt, kind, value, detail)


def parse_payload(payload: bytes, *, max_bytes: int = p.MAX_PAYLOAD_BYTES) -> Any:
    """JSON text to Python objects, refusing oversize or undecodable payloads."""
    if len(payload) > max_bytes:
        raise BatchError("oversize", f"{len(payload)} bytes > {max_bytes}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    # orjson is strict JSON. The standard library also reads NaN and Infinity, which some
    # senders write: parsed, they become per-record rejects instead of sinking the batch.
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BatchError("malformed_json", str(exc)[:200]) from None


def decode_batch(payload: bytes, *, max_bytes: int = p.MAX_PAYLOAD_BYTES) -> DecodedBatch:
    """Decode a JSON batch; see :func:`decode_object`."""
    return decode_object(parse_payload(payload, max_bytes=max_bytes))


def decode_object(obj: Any) -> DecodedBatch:
    """Validate an already parsed batch (from JSON or CBOR) record by record."""
    if not isinstance(obj, dict):
        raise BatchError("malformed_batch", "not an object")
    # `true` and `1.0` compare equal to 1 in Python but are not version 1.
    if not _is_int(obj.get("v")) or obj.get("v") != p.PROTOCOL_VERSION:
        raise BatchError("unsupported_version", repr(obj.get("v"))[:40])
    device_id: Any = obj.get("dev")
    seq: Any = obj.get("seq")
    boot_id: Any = obj.get("boot")
    t0: Any = obj.get("t0")
    if not p.valid_id(device_id):
        raise BatchError("bad_device_id", repr(device_id)[:80])
    if not _is_int(seq) or seq < 0:
        raise BatchError("bad_seq", repr(seq)[:40])
    if not p.valid_id(boot_id):
        raise BatchError("bad_boot_id", repr(boot_id)[:80])
    if not _is_int(t0) or t0 < 0:
        raise BatchError("bad_time", "t0 " + repr(t0)[:40])
    records: Any = obj.get("r", [])
    events: Any = obj.get("ev", [])
    if not isinstance(records, list) or not isinstance(events, list):
        raise BatchError("malformed_batch", "r and ev must be lists")
    if len(records) > p.MAX_READINGS_PER_BATCH or len(events) > p.MAX_EVENTS_PER_BATCH:
        raise BatchError("too_many_records", f"{len(records)} readings, {len(events)} events")

    batch = DecodedBatch(device_id, seq, boot_id, t0)
    t0_ms = t0 * 1000
    append_reading, append_error = batch.readings.append, batch.errors.append
    known_ids = _KNOWN_IDS
    isfinite = math.isfinite
    new_tuple = tuple.__new__
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
                and (type(value) is float or type(value) is int)
                and isfinite(value)
                and (sensor_id in known_ids or _remember_id(sensor_id))
            ):
                # tuple.__new__ skips the named tuple's Python-level constructor.
                append_reading(
                    new_tuple(Reading, (sensor_id, t0_ms + dt, float(value), quality, None))
                )
                continue
        result = _reading(rec, t0_ms)
        if type(result) is str:
            append_error(RecordError(i, result, _raw(rec)))
        else:
            append_reading(result)  # type: ignore[arg-type]
    for i, rec in enumerate(events):
        ev = _event(rec, t0_ms)
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
