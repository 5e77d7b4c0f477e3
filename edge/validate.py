"""Turn a raw probe answer into a protocol reading: faults and unsynchronised time are flags."""

from __future__ import annotations

import math
from typing import NamedTuple

from shared import protocol


class Reading(NamedTuple):
    """One reading as it is spooled and sent (the fields of a protocol ``r`` record)."""

    sensor_id: str
    time_ms: int
    value: float | None
    quality: int
    fault: str | None


def validate(
    sensor_id: str,
    time_ms: int,
    value: float | None,
    fault: str | None,
    range_c: tuple[float, float],
    clock_synced: bool,
) -> Reading:
    """A reading with its quality flags; a fault never carries a temperature."""
    quality = protocol.Q_OK if clock_synced else protocol.Q_CLOCK_UNSYNCED
    if fault is None:
        if value is None or not math.isfinite(value):
            fault = protocol.FAULT_READ_ERROR
        elif not range_c[0] <= value <= range_c[1]:
            fault = protocol.FAULT_OUT_OF_RANGE
    if fault is not None:
        if fault not in protocol.FAULT_REASONS:
            fault = protocol.FAULT_READ_ERROR
        return Reading(sensor_id, time_ms, None, quality | protocol.Q_PROBE_FAULT, fault)
    return Reading(sensor_id, time_ms, value, quality, None)
