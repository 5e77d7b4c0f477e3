"""Semantic checks on decoded readings and events: physical range, probe sentinels and clock
plausibility.

Structural checks live in :mod:`shared.decode`. Here a reading is either kept (possibly flagged
as a probe fault, with its value removed) or rejected with a reason; it is never silently dropped.
Events get the same clock checks as readings.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import protocol as p
from shared.decode import Reading

# 1-Wire family codes of the Dallas/Maxim temperature probes that report 85.0 °C at power-on.
_ONE_WIRE_TEMPERATURE_FAMILIES = ("10-", "22-", "28-", "3b-", "42-")
_POWER_ON_C = 85.0
_DISCONNECTED_C = -127.0
SENTINELS_C = frozenset((_POWER_ON_C, _DISCONNECTED_C))
# Any time before this is a board that never learnt the time (1970 or 2000 epochs).
EARLIEST_PLAUSIBLE_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Limits:
    min_valid_c: float
    max_valid_c: float
    max_future_skew_ms: int
    max_age_ms: int


# A row for the readings table: (device_id, sensor_id, time_ms, value, quality, fault).
Row = tuple[str, str, int, float | None, int, str | None]


def check_time(t: int, now_ms: int, limits: Limits) -> str | None:
    """Why a measurement time (UTC ms) is not believed, or ``None`` when it is plausible."""
    if t > now_ms + limits.max_future_skew_ms:
        return "clock_future"
    if t < EARLIEST_PLAUSIBLE_MS:
        return "clock_unset"
    if t < now_ms - limits.max_age_ms:
        return "clock_too_old"
    return None


def check_reading(
    device_id: str, r: Reading, now_ms: int, limits: Limits
) -> tuple[Row | None, str | None]:
    """``(row, None)`` to store, or ``(None, reason)`` to reject."""
    t = r.time_ms
    clock = check_time(t, now_ms, limits)
    if clock is not None:
        return None, clock
    value = r.value
    if value is None:  # already a probe fault, flagged by the sender
        return (device_id, r.sensor_id, t, None, r.quality, r.fault), None
    if value == _DISCONNECTED_C:
        return (
            device_id,
            r.sensor_id,
            t,
            None,
            r.quality | p.Q_PROBE_FAULT,
            p.FAULT_DISCONNECTED,
        ), None
    if value == _POWER_ON_C and r.sensor_id.lower().startswith(_ONE_WIRE_TEMPERATURE_FAMILIES):
        return (
            device_id,
            r.sensor_id,
            t,
            None,
            r.quality | p.Q_PROBE_FAULT,
            p.FAULT_POWER_ON,
        ), None
    if not limits.min_valid_c <= value <= limits.max_valid_c:
        return None, "out_of_range"
    return (device_id, r.sensor_id, t, value, r.quality, None), None
