"""Backtest: run one rule over a recorded series and list the alerts it would have raised, so a
rule can be tuned before it is enabled. Used by ``thermowatch replay --rules`` (CSV files) and by
``POST /api/v1/alert-rules/backtest`` (stored history)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from collector.alerts import messages
from collector.alerts.evaluate import (
    ProbeFaultEvaluator,
    Sample,
    Transition,
    evaluator_for,
    stale_transitions,
)
from collector.alerts.messages import Subject
from collector.alerts.rules import READING_KINDS, Kind, Rule


@dataclass
class WouldBeAlert:
    rule: str
    kind: str
    severity: str
    device_id: str
    sensor_id: str
    started_ms: int
    fired_ms: int
    resolved_ms: int | None
    value: float | None
    limit: float | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backtest(
    rule: Rule, subject: Subject, samples: list[Sample], *, end_ms: int | None = None
) -> list[WouldBeAlert]:
    """Alerts ``rule`` would have fired on one sensor's ``samples`` (any order). Stale and
    offline rules look at the gaps between samples, up to ``end_ms`` (default: the last one)."""
    ordered = sorted(samples, key=lambda s: (s.t_ms, s.event is not None))
    if not ordered:
        return []
    fault: str | None = None
    if rule.kind in READING_KINDS:
        evaluator = evaluator_for(rule, None)
        transitions = evaluator.feed(ordered)
        if isinstance(evaluator, ProbeFaultEvaluator):
            fault = evaluator.fault
    else:
        arrivals = [s.t_ms for s in ordered if s.event is None]
        transitions = stale_transitions(rule, arrivals, end_ms or ordered[-1].t_ms)
    return _episodes(rule, subject, transitions, fault)


def _episodes(
    rule: Rule, subject: Subject, transitions: list[Transition], fault: str | None
) -> list[WouldBeAlert]:
    out: list[WouldBeAlert] = []
    started: int | None = None
    current: WouldBeAlert | None = None
    for tr in transitions:
        if tr.kind == "pending":
            started = tr.t_ms
        elif tr.kind == "cancel":
            started = None
        elif tr.kind == "fire" and current is None:
            last = out[-1] if out else None
            if last and last.resolved_ms and tr.t_ms - last.resolved_ms <= rule.flap_window_ms:
                # As in the collector: back within the flap window re-opens the same alert.
                last.resolved_ms, current = None, last
                continue
            begin = started if started is not None else tr.t_ms
            for_s = (tr.t_ms - begin) / 1000.0
            if rule.kind in (Kind.stale, Kind.offline):
                for_s = tr.observed or for_s
            current = WouldBeAlert(
                rule=rule.name,
                kind=rule.kind.value,
                severity=rule.severity.value,
                device_id=subject.device_id,
                sensor_id=subject.sensor_id,
                started_ms=begin,
                fired_ms=tr.t_ms,
                resolved_ms=None,
                value=tr.value,
                limit=tr.limit,
                message=messages.firing(
                    rule.kind,
                    subject,
                    value=tr.value,
                    observed=tr.observed,
                    limit=tr.limit,
                    direction=tr.direction,
                    for_s=for_s,
                    fault=fault,
                ),
            )
            out.append(current)
        elif tr.kind == "clear" and current is not None:
            current.resolved_ms = tr.t_ms
            current = None
            started = None
    return out
