"""Threshold detector: hand-worked vectors, save/restore, config checks (CPython side)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from shared.detectors.threshold import (
    PENDING_HIGH,
    PENDING_NONE,
    STATE_HIGH,
    STATE_NORMAL,
    ThresholdDetector,
)
from shared.detectors.vectorized import threshold_series
from shared.protocol import EV_THRESHOLD_CLEAR, EV_THRESHOLD_HIGH
from tests.shared.run_vectors import decode_value, run_threshold
from tests.shared.vector_check import assert_matches, case_ids, load

VECTORS = load("threshold")
CASES = VECTORS["cases"]


@pytest.mark.parametrize("case", CASES, ids=case_ids(VECTORS))
def test_scalar_detector_gives_the_expected_events(case: dict[str, Any]) -> None:
    result = run_threshold(case)
    assert_matches(result["events"], case["expected_events"], "events")
    assert_matches(result["state"], case["expected_state"], "state")
    assert result["restored"] == case.get("expected_restored")


@pytest.mark.parametrize("case", CASES, ids=case_ids(VECTORS))
def test_saving_and_restoring_at_any_sample_changes_no_event(case: dict[str, Any]) -> None:
    for split, events in enumerate(run_threshold(case)["splits"], start=1):
        assert_matches(events, case["expected_events"], f"restored after sample {split}")


@pytest.mark.parametrize("case", CASES, ids=case_ids(VECTORS))
def test_vectorized_detector_gives_the_expected_events(case: dict[str, Any]) -> None:
    times = [s[0] for s in case["samples"]]
    values = [decode_value(s[1]) for s in case["samples"]]
    out = threshold_series(times, values, state=case.get("initial_state"), **case["config"])
    events = [list(e) for e in zip(out.index, out.kind, out.limit_c, strict=True)]
    assert_matches(events, case["expected_events"], "events")
    assert_matches(out.state, case["expected_state"], "state")


def test_state_is_plain_json() -> None:
    det = ThresholdDetector(high_c=30.0, min_duration_s=10)
    det.update(5.5, 31.0)
    saved = det.get_state()
    assert saved == [STATE_NORMAL, PENDING_HIGH, 5.5]
    assert json.loads(json.dumps(saved)) == saved


def test_event_detail_is_the_limit_the_event_refers_to() -> None:
    det = ThresholdDetector(high_c=30.0, low_c=10.0, hysteresis_c=1.0, min_duration_s=0)
    assert det.update(0, 35.0) == EV_THRESHOLD_HIGH
    assert det.last_limit_c == 30.0
    assert det.update(1, 20.0) == EV_THRESHOLD_CLEAR
    assert det.last_limit_c == 30.0


def test_a_limit_removed_while_active_clears_on_the_next_sample() -> None:
    det = ThresholdDetector(high_c=30.0, min_duration_s=0)
    det.update(0, 31.0)
    moved = ThresholdDetector(low_c=5.0, min_duration_s=0)
    assert moved.set_state(det.get_state())
    assert moved.update(1, 31.0) == EV_THRESHOLD_CLEAR
    assert moved.last_limit_c is None


@pytest.mark.parametrize(
    "saved",
    [
        None,
        [],
        [0, 1],
        [0, 1, 2, 3],
        [5, 0, 0],
        [-1, 0, 0],
        [0, 9, 0],
        [0, 1, "x"],
        [0, 1, math.nan],
        [True, 0, 0],
        [0.0, 0, 0],
        {"state": 1},
        "abc",
    ],
)
def test_a_corrupt_saved_state_resets_instead_of_raising(saved: Any) -> None:
    det = ThresholdDetector(high_c=30.0, min_duration_s=0)
    det.update(0, 31.0)
    assert det.state == STATE_HIGH
    assert det.set_state(saved) is False
    assert det.get_state() == [STATE_NORMAL, PENDING_NONE, 0]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"high_c": 10.0, "low_c": 10.0},
        {"high_c": 10.0, "low_c": 20.0},
        {"high_c": 10.0, "hysteresis_c": -0.1},
        {"high_c": 10.0, "hysteresis_c": math.nan},
        {"high_c": 10.0, "min_duration_s": -1},
        {"high_c": 10.0, "clear_duration_s": -1},
    ],
)
def test_an_impossible_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ThresholdDetector(**config)


def test_clear_duration_defaults_to_min_duration() -> None:
    det = ThresholdDetector(high_c=30.0, hysteresis_c=0.5, min_duration_s=20)
    assert det.clear_duration_s == 20
    assert (
        ThresholdDetector(high_c=30.0, min_duration_s=20, clear_duration_s=0).clear_duration_s == 0
    )
