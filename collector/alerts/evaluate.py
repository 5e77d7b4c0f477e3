"""Pure rule evaluation: one rule, one sensor, its saved state and new samples in, transitions out.

No database and no clock here, so the same code runs in the collector (state from
``alert_state`` rows) and in ``thermowatch replay --rules`` (state in memory). Every kind is a
signal fed to the shared :class:`~shared.detectors.threshold.ThresholdDetector`, which owns the
hysteresis and the for-durations: the temperature itself (threshold), its slope (rate), 1/0 for
"anomalous" (anomaly) or "probe fault" (probe_fault).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from collector.alerts.forecast import ResidualAnomalyDetector
from collector.alerts.rules import AnomalySource, Kind, Rule
from shared.detectors import threshold as th
from shared.protocol import EV_ANOMALY, EV_THRESHOLD_CLEAR, EV_THRESHOLD_HIGH, EV_THRESHOLD_LOW

TransitionKind = Literal["pending", "cancel", "fire", "clear"]


class Sample(NamedTuple):
    """A stored reading (value None for a probe fault) or an edge detector event.

    A named tuple, not a dataclass: one is made for every committed reading."""

    t_ms: int
    value: float | None
    fault: str | None = None
    event: str | None = None  # an edge event kind; such samples are not readings


@dataclass(frozen=True, slots=True)
class Transition:
    """What happened to a rule's condition at measurement time ``t_ms``.

    pending: the condition started and its for-duration runs; cancel: it ended before firing;
    fire: it held long enough; clear: it ended (after the clear duration and hysteresis).
    """

    t_ms: int
    kind: TransitionKind
    value: float | None  # the reading (°C) that caused it
    observed: float | None  # what was compared: °C, °C/h, z-score, or 1.0 for a fault
    limit: float | None  # the limit crossed, in the same unit as `observed`
    direction: str = ""  # "above" or "below" for limits


class _Gate:
    """Wraps a ThresholdDetector and reports its pending/fire/clear moves as transitions."""

    def __init__(
        self,
        *,
        high: float | None,
        low: float | None,
        hysteresis: float,
        for_s: float,
        clear_for_s: float | None,
        saved: Any,
    ) -> None:
        self.det = th.ThresholdDetector(high, low, hysteresis, for_s, clear_for_s)
        if saved is not None:
            self.det.set_state(saved)

    def feed(self, t_ms: int, observed: float, value: float | None, out: list[Transition]) -> None:
        det = self.det
        before = det.pending
        event = det.update(t_ms / 1000.0, observed)
        if event in (EV_THRESHOLD_HIGH, EV_THRESHOLD_LOW):
            direction = "above" if event == EV_THRESHOLD_HIGH else "below"
            out.append(Transition(t_ms, "fire", value, observed, det.last_limit_c, direction))
        elif event == EV_THRESHOLD_CLEAR:
            out.append(Transition(t_ms, "clear", value, observed, det.last_limit_c))
        elif det.state == th.STATE_NORMAL:
            after = det.pending
            if after != before and after in (th.PENDING_HIGH, th.PENDING_LOW):
                high = after == th.PENDING_HIGH
                limit = det.high_c if high else det.low_c
                out.append(
                    Transition(
                        t_ms, "pending", value, observed, limit, "above" if high else "below"
                    )
                )
            elif before in (th.PENDING_HIGH, th.PENDING_LOW) and after == th.PENDING_NONE:
                out.append(Transition(t_ms, "cancel", value, observed, None))

    @property
    def state(self) -> list[Any]:
        return list(self.det.get_state())


class Evaluator(ABC):
    """Base: feed samples in measurement-time order, read transitions and the state to save."""

    def __init__(self, rule: Rule, saved: dict[str, Any] | None) -> None:
        self.rule = rule
        self.saved = saved or {}

    @abstractmethod
    def feed(self, samples: list[Sample]) -> list[Transition]: ...

    @abstractmethod
    def get_state(self) -> dict[str, Any]: ...


class ThresholdEvaluator(Evaluator):
    def __init__(self, rule: Rule, saved: dict[str, Any] | None) -> None:
        super().__init__(rule, saved)
        p = rule.params
        self.gate = _Gate(
            high=p.get("above_c"),
            low=p.get("below_c"),
            hysteresis=p.get("hysteresis_c", 0.5),
            for_s=p.get("for_s", 60.0),
            clear_for_s=p.get("clear_for_s"),
            saved=self.saved.get("gate"),
        )

    def feed(self, samples: list[Sample]) -> list[Transition]:
        out: list[Transition] = []
        for s in samples:
            if s.event is None and s.value is not None:
                self.gate.feed(s.t_ms, s.value, s.value, out)
        return out

    def get_state(self) -> dict[str, Any]:
        return {"gate": self.gate.state}


# At most this many points are kept in a rate window (thinned evenly), whatever the sample rate.
_RATE_POINTS = 60


class RateEvaluator(Evaluator):
    """Least-squares slope of the last ``window_s`` of readings, in °C per hour."""

    def __init__(self, rule: Rule, saved: dict[str, Any] | None) -> None:
        super().__init__(rule, saved)
        p = rule.params
        rise, fall = p.get("rise_c_per_h"), p.get("fall_c_per_h")
        smallest = min(x for x in (rise, fall) if x is not None)
        self.window_ms = int(p.get("window_s", 600.0) * 1000)
        self.gate = _Gate(
            high=rise,
            low=-fall if fall is not None else None,
            hysteresis=0.25 * smallest,
            for_s=p.get("for_s", 0.0),
            clear_for_s=None,
            saved=self.saved.get("gate"),
        )
        self.points: list[list[float]] = [list(x) for x in self.saved.get("points", [])]

    def _slope_per_h(self) -> float | None:
        pts = self.points
        if len(pts) < 3 or pts[-1][0] - pts[0][0] < self.window_ms / 2:
            return None
        n = len(pts)
        t0 = pts[0][0]
        mt = sum(p[0] - t0 for p in pts) / n
        mv = sum(p[1] for p in pts) / n
        var = sum((p[0] - t0 - mt) ** 2 for p in pts)
        if var == 0:
            return None
        cov = sum((p[0] - t0 - mt) * (p[1] - mv) for p in pts)
        return cov / var * 3_600_000.0

    def feed(self, samples: list[Sample]) -> list[Transition]:
        out: list[Transition] = []
        step = self.window_ms / _RATE_POINTS
        for s in samples:
            if s.event is not None or s.value is None:
                continue
            pts = self.points
            if pts and s.t_ms - pts[-1][0] < step:
                pts[-1] = [float(s.t_ms), s.value]  # keep the newest within a step
            else:
                pts.append([float(s.t_ms), s.value])
            while pts and pts[0][0] < s.t_ms - self.window_ms:
                del pts[0]
            slope = self._slope_per_h()
            if slope is not None:
                self.gate.feed(s.t_ms, slope, s.value, out)
        return out

    def get_state(self) -> dict[str, Any]:
        return {"gate": self.gate.state, "points": self.points}


class AnomalyEvaluator(Evaluator):
    """Edge EWMA events and/or the server's forecaster; clears after ``clear_after_s`` quiet."""

    def __init__(self, rule: Rule, saved: dict[str, Any] | None) -> None:
        super().__init__(rule, saved)
        p = rule.params
        source = AnomalySource(p.get("source", AnomalySource.both))
        self.use_edge = source in (AnomalySource.edge, AnomalySource.both)
        self.use_server = source in (AnomalySource.server, AnomalySource.both)
        self.z_limit = p.get("z_limit", 5.0)
        self.detector = ResidualAnomalyDetector(
            order=p.get("ar_order", 2),
            forgetting=p.get("forgetting", 0.995),
            alpha=p.get("alpha", 0.05),
            z_limit=self.z_limit,
            warmup=p.get("warmup", 30),
            min_std_c=p.get("min_std_c", 0.0625),
        )
        self.detector.set_state(self.saved.get("detector", {}))
        self.gate = _Gate(
            high=0.5,
            low=None,
            hysteresis=0.0,
            for_s=0.0,
            clear_for_s=p.get("clear_after_s", 300.0),
            saved=self.saved.get("gate"),
        )

    def feed(self, samples: list[Sample]) -> list[Transition]:
        out: list[Transition] = []
        for s in samples:
            if s.event is not None:
                if s.event == EV_ANOMALY and self.use_edge:
                    self._signal(s.t_ms, True, s.value, None, out)
                continue
            if s.value is None:
                continue
            z, anomalous = self.detector.update(s.value) if self.use_server else (None, False)
            self._signal(s.t_ms, anomalous, s.value, z, out)
        return out

    def _signal(
        self,
        t_ms: int,
        anomalous: bool,
        value: float | None,
        z: float | None,
        out: list[Transition],
    ) -> None:
        moves: list[Transition] = []
        self.gate.feed(t_ms, 1.0 if anomalous else 0.0, value, moves)
        for m in moves:
            # Report the score and limit people understand, not the internal 0/1 signal.
            limit = self.z_limit if z is not None else None
            out.append(Transition(m.t_ms, m.kind, value, z, limit))

    def get_state(self) -> dict[str, Any]:
        return {"gate": self.gate.state, "detector": self.detector.get_state()}


class ProbeFaultEvaluator(Evaluator):
    """Fires when a sensor has sent only probe faults for ``for_s``; a valid reading clears."""

    def __init__(self, rule: Rule, saved: dict[str, Any] | None) -> None:
        super().__init__(rule, saved)
        self.gate = _Gate(
            high=0.5,
            low=None,
            hysteresis=0.0,
            for_s=rule.params.get("for_s", 300.0),
            clear_for_s=0.0,
            saved=self.saved.get("gate"),
        )
        self.fault: str | None = self.saved.get("fault")

    def feed(self, samples: list[Sample]) -> list[Transition]:
        out: list[Transition] = []
        for s in samples:
            if s.event is not None:
                continue
            faulty = s.value is None
            if faulty:
                self.fault = s.fault
            self.gate.feed(s.t_ms, 1.0 if faulty else 0.0, s.value, out)
        return out

    def get_state(self) -> dict[str, Any]:
        return {"gate": self.gate.state, "fault": self.fault}


_EVALUATORS: dict[Kind, type[Evaluator]] = {
    Kind.threshold: ThresholdEvaluator,
    Kind.rate: RateEvaluator,
    Kind.anomaly: AnomalyEvaluator,
    Kind.probe_fault: ProbeFaultEvaluator,
}


def evaluator_for(rule: Rule, saved: dict[str, Any] | None = None) -> Evaluator:
    """The evaluator of a reading-driven rule kind, restored from ``saved``."""
    return _EVALUATORS[rule.kind](rule, saved)


def stale_transitions(
    rule: Rule, arrivals_ms: list[int], end_ms: int, gap_s: float | None = None
) -> list[Transition]:
    """Stale episodes in a series of arrival times (for replay): a gap longer than the allowed
    silence fires at its start plus the allowance and clears at the next arrival."""
    p = rule.params
    expected_s = max(float(p.get("expected_interval_s", 60.0)), gap_s or 0.0)
    allowed_ms = int(expected_s * float(p.get("missed_intervals", 3.0)) * 1000)
    out: list[Transition] = []
    times = sorted(arrivals_ms)
    for prev, nxt in zip(times, [*times[1:], None], strict=True):
        stop = end_ms if nxt is None else nxt
        if stop - prev > allowed_ms:
            silent_s = allowed_ms / 1000.0
            out.append(Transition(prev + allowed_ms, "fire", None, silent_s, silent_s))
            if nxt is not None:
                out.append(Transition(nxt, "clear", None, None, None))
    return out
