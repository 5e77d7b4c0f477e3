"""EWMA anomaly detector: vectors from exact arithmetic, save/restore, config checks (CPython)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from shared.detectors.ewma import EwmaDetector
from shared.detectors.vectorized import ewma_series
from tests.shared.run_vectors import decode_value, encode_value, run_ewma
from tests.shared.vector_check import assert_matches, case_ids, load

VECTORS = load("ewma")
CASES = VECTORS["cases"]


@pytest.mark.parametrize("case", CASES, ids=case_ids(VECTORS))
def test_scalar_detector_matches_exact_arithmetic(case: dict[str, Any]) -> None:
    result = run_ewma(case)
    assert_matches(result["outputs"], case["expected"], "z, anomaly")
    assert_matches(result["state"], case["expected_state"], "state")


@pytest.mark.parametrize("case", CASES, ids=case_ids(VECTORS))
def test_saving_and_restoring_at_any_sample_changes_no_output(case: dict[str, Any]) -> None:
    for split, outputs in enumerate(run_ewma(case)["splits"], start=1):
        assert_matches(outputs, case["expected"], f"restored after sample {split}")


@pytest.mark.parametrize("case", CASES, ids=case_ids(VECTORS))
def test_vectorized_detector_matches_exact_arithmetic(case: dict[str, Any]) -> None:
    out = ewma_series([decode_value(v) for v in case["values"]], **case["config"])
    outputs = [
        [None if math.isnan(z) else encode_value(z), bool(a)]
        for z, a in zip(out.z.tolist(), out.anomaly.tolist(), strict=True)
    ]
    assert_matches(outputs, case["expected"], "z, anomaly")
    assert_matches(out.state, case["expected_state"], "state")


def test_first_value_seeds_the_mean_instead_of_zero() -> None:
    det = EwmaDetector(alpha=0.1, warmup=0)
    assert det.update(21.5) == (None, False)
    assert det.get_state() == [1, 21.5, 0.0]
    z, anomaly = det.update(21.5)
    assert (z, anomaly) == (0.0, False)


def test_no_anomaly_is_reported_during_warmup() -> None:
    det = EwmaDetector(alpha=0.5, z_limit=3.0, warmup=3, min_std_c=1.0)
    results = [det.update(v) for v in (0.0, 0.0, 100.0, 50.0, 50.0, 500.0)]
    assert results[2] == (100.0, False)  # far past the limit, but only two samples seen
    assert results[5] == (18.0, True)
    assert [a for _, a in results] == [False, False, False, False, False, True]


def test_state_is_plain_json_and_restores_exactly_on_cpython() -> None:
    det = EwmaDetector(alpha=0.2)
    for v in (20.0, 20.1875, None, 19.9375, 20.0625):
        det.update(v)
    saved = json.loads(json.dumps(det.get_state()))
    other = EwmaDetector(alpha=0.2)
    assert other.set_state(saved)
    assert other.update(25.0) == det.update(25.0)


@pytest.mark.parametrize(
    "saved",
    [
        None,
        [],
        [1, 2.0],
        [-1, 20.0, 0.0],
        [1.5, 20.0, 0.0],
        [True, 20.0, 0.0],
        [3, "20", 0.0],
        [3, math.nan, 0.0],
        [3, math.inf, 0.0],
        [3, 20.0, -1.0],
        [3, 20.0, math.inf],
        {"count": 3},
    ],
)
def test_a_corrupt_saved_state_resets_instead_of_raising(saved: Any) -> None:
    det = EwmaDetector()
    det.update(20.0)
    det.update(21.0)
    assert det.set_state(saved) is False
    assert det.get_state() == [0, 0.0, 0.0]
    assert det.update(30.0) == (None, False)  # seeds again from the next value


@pytest.mark.parametrize(
    "config",
    [
        {"alpha": 0.0},
        {"alpha": 1.5},
        {"alpha": math.nan},
        {"z_limit": 0.0},
        {"warmup": -1},
        {"min_std_c": -0.1},
    ],
)
def test_an_impossible_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EwmaDetector(**config)
