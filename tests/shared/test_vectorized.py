"""The numpy detectors give the scalar detectors' outputs on long series."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from shared.detectors.ewma import EwmaDetector
from shared.detectors.threshold import ThresholdDetector
from shared.detectors.vectorized import ewma_series, threshold_series

N = 100_000
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def series() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A random walk around 20 °C sampled every 10 s, with spikes and 1 % probe faults."""
    rng = np.random.default_rng(20251123)
    values = 20.0 + np.cumsum(rng.normal(0.0, 0.05, N))
    spikes = rng.random(N) < 0.002
    values[spikes] += rng.normal(0.0, 5.0, int(spikes.sum()))
    values[rng.random(N) < 0.01] = np.nan
    # Irregular sampling, as from a board that sleeps and wakes late.
    times = 1_763_900_000.0 + np.cumsum(rng.uniform(5.0, 15.0, N))
    return times, values


def _scalar_ewma(values: npt.NDArray[np.float64], **config: Any) -> tuple[Any, Any, Any]:
    det = EwmaDetector(**config)
    z = np.full(len(values), np.nan)
    anomaly = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values.tolist()):
        zi, anomaly[i] = det.update(v)
        if zi is not None:
            z[i] = zi
    return z, anomaly, det.get_state()


def _scalar_threshold(
    times: npt.NDArray[np.float64], values: npt.NDArray[np.float64], **config: Any
) -> tuple[list[Any], list[Any]]:
    det = ThresholdDetector(**config)
    events = []
    for i, (t, v) in enumerate(zip(times.tolist(), values.tolist(), strict=True)):
        kind = det.update(t, v)
        if kind is not None:
            events.append((i, kind, det.last_limit_c))
    return events, det.get_state()


@pytest.mark.parametrize(
    "config",
    [
        {"alpha": 0.05, "z_limit": 4.0, "warmup": 20},
        {"alpha": 0.3, "z_limit": 3.0, "warmup": 0, "min_std_c": 0.0},
        {"alpha": 0.01, "z_limit": 5.0, "warmup": 100, "update_on_anomaly": False},
    ],
)
def test_ewma_matches_scalar_on_100k_samples(series: Any, config: dict[str, Any]) -> None:
    _, values = series
    z, anomaly, state = _scalar_ewma(values, **config)
    out = ewma_series(values, **config)
    np.testing.assert_array_equal(np.isnan(out.z), np.isnan(z))
    np.testing.assert_allclose(out.z, z, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_array_equal(out.anomaly, anomaly)
    assert anomaly.sum() > 10  # the spikes are found, so the comparison covers anomalies
    assert out.state[0] == state[0]
    np.testing.assert_allclose(out.state[1:], state[1:], rtol=TOLERANCE, atol=TOLERANCE)


def test_ewma_in_chunks_matches_one_pass(series: Any) -> None:
    _, values = series
    whole = ewma_series(values, alpha=0.05)
    state = None
    parts = []
    for chunk in np.array_split(values, 7):
        out = ewma_series(chunk, alpha=0.05, state=state)
        parts.append(out.z)
        state = out.state
    np.testing.assert_allclose(np.concatenate(parts), whole.z, rtol=TOLERANCE, atol=TOLERANCE)


def _quantiles(values: npt.NDArray[np.float64], *qs: float) -> list[float]:
    return [float(q) for q in np.nanpercentile(values, qs)]


@pytest.mark.parametrize(
    "make_config",
    [
        lambda v: {
            "high_c": _quantiles(v, 70)[0],
            "low_c": _quantiles(v, 30)[0],
            "hysteresis_c": 0.2,
            "min_duration_s": 60,
        },
        # On the median with no hysteresis or duration: it flaps as often as it can.
        lambda v: {"high_c": _quantiles(v, 50)[0], "hysteresis_c": 0.0, "min_duration_s": 0},
        lambda v: {
            "low_c": _quantiles(v, 50)[0],
            "hysteresis_c": 0.1,
            "min_duration_s": 30,
            "clear_duration_s": 0,
        },
        lambda v: {
            "high_c": _quantiles(v, 52)[0],
            "low_c": _quantiles(v, 48)[0],
            "hysteresis_c": 1.0,
            "min_duration_s": 0,
        },
    ],
)
def test_threshold_matches_scalar_on_100k_samples(series: Any, make_config: Any) -> None:
    times, values = series
    config = make_config(values)
    events, state = _scalar_threshold(times, values, **config)
    out = threshold_series(times, values, **config)
    assert len(events) > 10
    assert list(zip(out.index, out.kind, out.limit_c, strict=True)) == events
    assert out.state == state


def test_threshold_in_chunks_matches_one_pass(series: Any) -> None:
    times, values = series
    config: dict[str, Any] = {
        "high_c": float(np.nanmedian(values)),
        "hysteresis_c": 0.3,
        "min_duration_s": 120,
    }
    whole = threshold_series(times, values, **config)
    state = None
    index: list[int] = []
    offset = 0
    for t_chunk, v_chunk in zip(np.array_split(times, 13), np.array_split(values, 13), strict=True):
        out = threshold_series(t_chunk, v_chunk, state=state, **config)
        index += [offset + i for i in out.index]
        offset += len(t_chunk)
        state = out.state
    assert index == whole.index
    assert state == whole.state


def test_all_faults_give_no_output_and_keep_the_state() -> None:
    faults = [None, float("nan"), None]
    out = ewma_series(faults, state=[3, 20.0, 0.5])
    assert np.isnan(out.z).all() and not out.anomaly.any()
    assert out.state == [3, 20.0, 0.5]
    th = threshold_series([1, 2, 3], faults, high_c=30.0, state=[0, 1, 0.5])
    assert th.index == [] and th.state == [0, 1, 0.5]


def test_a_corrupt_saved_state_starts_fresh() -> None:
    out = ewma_series([20.0, 30.0], state="garbage")
    assert np.isnan(out.z[0]) and out.z[1] == 10.0 / 0.0625
    th = threshold_series([0, 1], [31.0, 31.0], high_c=30.0, min_duration_s=1, state=[9, 9, 9])
    assert th.index == [1]
    assert th.state == [1, 0, 0]
