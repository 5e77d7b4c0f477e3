"""Validation of single readings: kept, flagged as a probe fault, or rejected with a reason."""

from __future__ import annotations

import pytest

from collector.ingest.validate import Limits, check_reading
from shared import protocol as p
from shared.decode import Reading

NOW_MS = 1_795_000_000_000
LIMITS = Limits(
    min_valid_c=-60, max_valid_c=150, max_future_skew_ms=300_000, max_age_ms=400 * 86_400_000
)


def reading(
    value: float | None,
    *,
    sensor: str = "28-0316a2795dff",
    dt_ms: int = 0,
    quality: int = 0,
    fault: str | None = None,
) -> Reading:
    return Reading(sensor, NOW_MS + dt_ms, value, quality, fault)


def test_a_plausible_reading_is_kept_unchanged() -> None:
    row, reason = check_reading("d1", reading(21.5), NOW_MS, LIMITS)
    assert reason is None
    assert row == ("d1", "28-0316a2795dff", NOW_MS, 21.5, 0, None)


def test_ds18b20_power_on_85_is_a_probe_fault_not_a_temperature() -> None:
    row, reason = check_reading("d1", reading(85.0), NOW_MS, LIMITS)
    assert reason is None and row is not None
    assert row[3] is None
    assert row[4] & p.Q_PROBE_FAULT
    assert row[5] == p.FAULT_POWER_ON


def test_85_from_a_non_one_wire_sensor_is_a_real_temperature() -> None:
    row, _ = check_reading("d1", reading(85.0, sensor="sauna-bme280"), NOW_MS, LIMITS)
    assert row is not None and row[3] == 85.0 and row[5] is None


def test_minus_127_means_disconnected_for_any_sensor() -> None:
    row, _ = check_reading("d1", reading(-127.0, sensor="cpu"), NOW_MS, LIMITS)
    assert row is not None and row[3] is None and row[5] == p.FAULT_DISCONNECTED


def test_fault_flagged_by_the_sender_is_kept_with_its_reason() -> None:
    r = reading(None, quality=p.Q_PROBE_FAULT, fault=p.FAULT_ZERO_SCRATCHPAD)
    row, _ = check_reading("d1", r, NOW_MS, LIMITS)
    assert row == ("d1", r.sensor_id, NOW_MS, None, p.Q_PROBE_FAULT, p.FAULT_ZERO_SCRATCHPAD)


@pytest.mark.parametrize(
    ("value", "dt_ms", "reason"),
    [
        (500.0, 0, "out_of_range"),
        (-80.0, 0, "out_of_range"),
        (20.0, 301_000, "clock_future"),
        (20.0, -(NOW_MS - 946_684_800_000), "clock_unset"),  # a board on the 2000 epoch
        (20.0, -401 * 86_400_000, "clock_too_old"),
    ],
)
def test_implausible_readings_are_rejected_with_a_reason(
    value: float, dt_ms: int, reason: str
) -> None:
    row, got = check_reading("d1", reading(value, dt_ms=dt_ms), NOW_MS, LIMITS)
    assert row is None
    assert got == reason


def test_small_future_skew_is_tolerated() -> None:
    row, reason = check_reading("d1", reading(20.0, dt_ms=299_000), NOW_MS, LIMITS)
    assert reason is None and row is not None


def test_unsynchronised_clock_flag_is_kept() -> None:
    row, _ = check_reading("d1", reading(20.0, quality=p.Q_CLOCK_UNSYNCED), NOW_MS, LIMITS)
    assert row is not None and row[4] == p.Q_CLOCK_UNSYNCED
