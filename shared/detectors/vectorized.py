"""numpy/scipy versions of the detectors for replaying long series (CPython only).

They give the same outputs as :mod:`shared.detectors.threshold` and :mod:`shared.detectors.ewma`
fed one sample at a time (the tests hold them to 1e-9 on 100k samples), and take and return the
same saved state, so a long series can be replayed in chunks.

* EWMA: with ``update_on_anomaly`` (the default) both recursions are linear in their inputs, so
  the mean is one ``scipy.signal.lfilter`` pass and the variance a second one over the squared
  deviations. Probe faults (NaN) are compressed out first and the results scattered back.
  With ``update_on_anomaly=False`` whether a sample updates the state depends on its own score,
  which no linear filter expresses; that case runs the scalar detector in a loop.
* Threshold: the state machine changes state only at events, so it jumps from one event to the
  next; between events it looks only at precomputed run lengths of each condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from shared.detectors import ewma as _ewma
from shared.detectors import threshold as _th
from shared.protocol import EV_THRESHOLD_CLEAR, EV_THRESHOLD_HIGH, EV_THRESHOLD_LOW

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class EwmaSeries:
    """Per-sample EWMA output: ``z`` (NaN where the scalar detector returns None) and
    ``anomaly``, plus the detector state after the last sample."""

    z: FloatArray
    anomaly: BoolArray
    state: list[Any]


@dataclass(frozen=True)
class ThresholdEvents:
    """Threshold events: ``index`` into the input arrays, ``kind`` and the ``limit_c`` each refers
    to (None for a limit removed while active), plus the detector state after the last sample."""

    index: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    limit_c: list[float | None] = field(default_factory=list)
    state: list[Any] = field(default_factory=list)


def _as_values(values: Sequence[float | None] | FloatArray) -> FloatArray:
    """Values as a float64 array with NaN for probe faults (None)."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def ewma_series(
    values: Sequence[float | None] | FloatArray,
    *,
    alpha: float = _ewma.DEFAULT_ALPHA,
    z_limit: float = _ewma.DEFAULT_Z_LIMIT,
    warmup: int = _ewma.DEFAULT_WARMUP,
    min_std_c: float = _ewma.DEFAULT_MIN_STD_C,
    update_on_anomaly: bool = True,
    state: Sequence[Any] | None = None,
) -> EwmaSeries:
    """Run :class:`~shared.detectors.ewma.EwmaDetector` over ``values`` (NaN/None = fault)."""
    # The scalar class validates the config and the saved state exactly as the boards do.
    det = _ewma.EwmaDetector(alpha, z_limit, warmup, min_std_c, update_on_anomaly)
    if state is not None:
        det.set_state(state)
    x = _as_values(values)
    n = len(x)
    z = np.full(n, np.nan)
    anomaly = np.zeros(n, dtype=bool)
    if not update_on_anomaly:
        for i, v in enumerate(x.tolist()):
            zi, anomaly[i] = det.update(v)
            if zi is not None:
                z[i] = zi
        return EwmaSeries(z, anomaly, det.get_state())

    valid = np.flatnonzero(~np.isnan(x))
    if valid.size == 0:
        return EwmaSeries(z, anomaly, det.get_state())
    y = x[valid]
    count, mean, var = det.count, det.mean, det.var
    if count == 0:
        count, mean, var = 1, float(y[0]), 0.0
        valid, y = valid[1:], y[1:]
    if y.size:
        keep = 1.0 - alpha
        means = lfilter([alpha], [1.0, -keep], y, zi=[keep * mean])[0]
        mean_before = np.concatenate(([mean], means[:-1]))
        diff = y - mean_before
        variances = lfilter([keep], [1.0, -keep], diff * (alpha * diff), zi=[keep * var])[0]
        var_before = np.concatenate(([var], variances[:-1]))
        std = np.maximum(np.sqrt(var_before), min_std_c)
        with np.errstate(divide="ignore", invalid="ignore"):
            zc = diff / std
        zc[(std == 0) & (diff == 0)] = 0.0  # 0/0 on a steady series with no floor: no deviation
        seen_before = count + np.arange(y.size)
        z[valid] = zc
        anomaly[valid] = (seen_before >= warmup) & (np.abs(zc) > z_limit)
        count, mean, var = count + int(y.size), float(means[-1]), float(variances[-1])
    return EwmaSeries(z, anomaly, [count, mean, var])


class _Runs:
    """Runs of consecutive samples meeting one condition, and where each would fire."""

    def __init__(self, cond: BoolArray, t: FloatArray, needed_s: float) -> None:
        m = len(cond)
        k = np.arange(m)
        prev = np.concatenate(([False], cond[:-1]))
        nxt = np.concatenate((cond[1:], [False]))
        self.cond = cond
        self.t = t
        self.needed_s = needed_s
        self.start = np.maximum.accumulate(np.where(cond & ~prev, k, -1))
        self.end = np.minimum.accumulate(np.where(cond & ~nxt, k, m)[::-1])[::-1]
        # Would the sample fire if its run had started being timed at the run's first sample?
        ready = cond & (t - t[np.maximum(self.start, 0)] >= needed_s)
        first_ready = np.minimum.accumulate(np.where(ready, k, m)[::-1])[::-1]
        self.next_ready = np.concatenate((first_ready, [m]))  # index m: nothing left

    def first_fire(self, entry: int, since_s: float) -> int:
        """Index of the first sample at or after ``entry`` that fires, if timing at ``entry``
        started at ``since_s``; ``len`` of the series when none does."""
        m = len(self.cond)
        if entry >= m:
            return m
        if not self.cond[entry] or (self.start[entry] == entry and since_s == self.t[entry]):
            return int(self.next_ready[entry])
        # The run holding `entry` is timed from `since_s`, not from its first sample.
        end = int(self.end[entry])
        held = self.t[entry : end + 1] - since_s >= self.needed_s
        if held.any():
            return entry + int(np.argmax(held))
        return int(self.next_ready[end + 1])

    def pending_since(self, last: int, entry: int, since_at_entry: float) -> float | None:
        """When the timing still running at sample ``last`` started, or None if none runs."""
        if not self.cond[last]:
            return None
        start = int(self.start[last])
        return since_at_entry if start <= entry else float(self.t[start])


def threshold_series(
    times: Sequence[float] | FloatArray,
    values: Sequence[float | None] | FloatArray,
    *,
    high_c: float | None = None,
    low_c: float | None = None,
    hysteresis_c: float = _th.DEFAULT_HYSTERESIS_C,
    min_duration_s: float = _th.DEFAULT_MIN_DURATION_S,
    clear_duration_s: float | None = None,
    state: Sequence[Any] | None = None,
) -> ThresholdEvents:
    """Run :class:`~shared.detectors.threshold.ThresholdDetector` over one sensor's series."""
    det = _th.ThresholdDetector(high_c, low_c, hysteresis_c, min_duration_s, clear_duration_s)
    if state is not None:
        det.set_state(state)
    t_all = np.asarray(times, dtype=np.float64)
    x_all = _as_values(values)
    valid = np.flatnonzero(~np.isnan(x_all))
    t, x = t_all[valid], x_all[valid]
    m = len(x)
    out = ThresholdEvents()
    if m == 0:
        out.state.extend(det.get_state())
        return out

    fire_s, clear_s = det.min_duration_s, det.clear_duration_s
    ones = np.ones(m, dtype=bool)
    zeros = np.zeros(m, dtype=bool)
    runs = {
        (_th.STATE_NORMAL, _th.PENDING_HIGH): _Runs(
            zeros if high_c is None else x > high_c, t, fire_s
        ),
        (_th.STATE_NORMAL, _th.PENDING_LOW): _Runs(
            zeros if low_c is None else x < low_c, t, fire_s
        ),
        (_th.STATE_HIGH, _th.PENDING_CLEAR): _Runs(
            ones if det.clear_below_c is None else x < det.clear_below_c, t, clear_s
        ),
        (_th.STATE_LOW, _th.PENDING_CLEAR): _Runs(
            ones if det.clear_above_c is None else x > det.clear_above_c, t, clear_s
        ),
    }
    state, pending, since = det.state, det.pending, det.pending_since_s
    entry = 0
    while True:
        watched = [(kind, r) for (st, kind), r in runs.items() if st == state]

        def since_for(kind: int, entry: int = entry) -> float:
            # Only the first sample can continue a timing restored from a saved state.
            return since if entry == 0 and pending == kind else float(t[entry])

        fired, fired_kind = m, _th.PENDING_NONE
        for kind, r in watched:
            at = r.first_fire(entry, since_for(kind)) if entry < m else m
            if at < fired:
                fired, fired_kind = at, kind
        if fired >= m:
            break
        out.index.append(int(valid[fired]))
        if fired_kind == _th.PENDING_HIGH:
            out.kind.append(EV_THRESHOLD_HIGH)
            out.limit_c.append(det.high_c)
            state = _th.STATE_HIGH
        elif fired_kind == _th.PENDING_LOW:
            out.kind.append(EV_THRESHOLD_LOW)
            out.limit_c.append(det.low_c)
            state = _th.STATE_LOW
        else:
            out.kind.append(EV_THRESHOLD_CLEAR)
            out.limit_c.append(det.high_c if state == _th.STATE_HIGH else det.low_c)
            state = _th.STATE_NORMAL
        entry = fired + 1

    final_pending, final_since = _th.PENDING_NONE, 0.0
    if entry < m:
        for kind, r in watched:
            started = r.pending_since(m - 1, entry, since_for(kind))
            if started is not None:
                final_pending, final_since = kind, started
    out.state.extend([state, final_pending, final_since if final_pending else 0])
    return out
