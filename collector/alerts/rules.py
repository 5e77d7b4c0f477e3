"""Alert rules: the kinds, their validated parameters, and which rule applies to which sensor.

A rule is scoped to one sensor, one device, one home, or nothing (a default for every sensor).
Rules with the same ``name`` override each other: for a given sensor only the most specific one
applies (sensor > device > home > default), so a default "stale" rule can be relaxed for one
sleeping board without touching the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Kind(StrEnum):
    threshold = "threshold"
    rate = "rate"
    anomaly = "anomaly"
    stale = "stale"
    offline = "offline"
    probe_fault = "probe_fault"


class Severity(StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


SEVERITY_RANK = {Severity.info: 0, Severity.warning: 1, Severity.critical: 2}

# Rules evaluated on readings as they are committed; the others are evaluated by the sweep.
READING_KINDS = frozenset({Kind.threshold, Kind.rate, Kind.anomaly, Kind.probe_fault})
SWEEP_KINDS = frozenset({Kind.stale, Kind.offline})


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A condition that returns within this long after resolving re-opens the same alert, and the
    # "resolved" message waits this long, so a flapping value yields one alert and no message storm.
    flap_window_s: float = Field(default=300.0, ge=0)


class ThresholdParams(_Params):
    above_c: float | None = None
    below_c: float | None = None
    hysteresis_c: float = Field(default=0.5, ge=0)
    for_s: float = Field(default=60.0, ge=0)
    clear_for_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _limits(self) -> ThresholdParams:
        if self.above_c is None and self.below_c is None:
            raise ValueError("a threshold rule needs above_c or below_c")
        if self.above_c is not None and self.below_c is not None and self.below_c >= self.above_c:
            raise ValueError("below_c must be lower than above_c")
        return self


class RateParams(_Params):
    rise_c_per_h: float | None = Field(default=None, gt=0)
    fall_c_per_h: float | None = Field(default=None, gt=0)
    window_s: float = Field(default=600.0, gt=0)
    for_s: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _limits(self) -> RateParams:
        if self.rise_c_per_h is None and self.fall_c_per_h is None:
            raise ValueError("a rate rule needs rise_c_per_h or fall_c_per_h")
        return self


class AnomalySource(StrEnum):
    edge = "edge"  # EWMA events the boards and the edge agent report
    server = "server"  # the collector's own autoregressive forecaster
    both = "both"


class AnomalyParams(_Params):
    source: AnomalySource = AnomalySource.both
    z_limit: float = Field(default=5.0, gt=0)
    alpha: float = Field(default=0.05, gt=0, le=1)
    warmup: int = Field(default=30, ge=2)
    ar_order: int = Field(default=2, ge=1, le=8)
    forgetting: float = Field(default=0.995, gt=0.9, le=1)
    min_std_c: float = Field(default=0.0625, ge=0)
    clear_after_s: float = Field(default=300.0, ge=0)


class StaleParams(_Params):
    # How often the sensor is expected to report. The sweep also learns the gap between batches
    # it actually sees, so a board that sleeps between reports is judged by its own rhythm.
    expected_interval_s: float = Field(default=60.0, gt=0)
    missed_intervals: float = Field(default=3.0, ge=1)


class OfflineParams(StaleParams):
    pass


class ProbeFaultParams(_Params):
    for_s: float = Field(default=300.0, ge=0)


PARAMS: dict[Kind, type[_Params]] = {
    Kind.threshold: ThresholdParams,
    Kind.rate: RateParams,
    Kind.anomaly: AnomalyParams,
    Kind.stale: StaleParams,
    Kind.offline: OfflineParams,
    Kind.probe_fault: ProbeFaultParams,
}


class RuleError(ValueError):
    """A rule's definition is invalid; the message says why."""


def validate_params(kind: Kind | str, params: dict[str, Any]) -> dict[str, Any]:
    """Params with defaults filled in, or :class:`RuleError`."""
    try:
        model = PARAMS[Kind(kind)]
    except ValueError:
        raise RuleError(f"unknown rule kind {kind!r}") from None
    try:
        return model.model_validate(params).model_dump()
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise RuleError(reasons) from None


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    name: str
    kind: Kind
    params: dict[str, Any]
    severity: Severity = Severity.warning
    home_id: int | None = None
    device_id: str | None = None
    sensor_id: str | None = None
    enabled: bool = True

    @property
    def specificity(self) -> int:
        if self.sensor_id is not None:
            return 3
        if self.device_id is not None:
            return 2
        return 1 if self.home_id is not None else 0

    def covers(self, device_id: str, sensor_id: str, home_id: int | None) -> bool:
        if self.device_id is not None and self.device_id != device_id:
            return False
        # A device's rule was made by (and for) the home the device was in: it applies only
        # while the device is still there, whatever happened to the device since.
        if self.device_id is not None and self.home_id != home_id:
            return False
        if self.sensor_id is not None and self.sensor_id != sensor_id:
            return False
        return not (self.device_id is None and self.home_id is not None and self.home_id != home_id)

    @property
    def flap_window_ms(self) -> int:
        return int(float(self.params.get("flap_window_s", 0.0)) * 1000)


def applicable(
    rules: list[Rule], device_id: str, sensor_id: str, home_id: int | None
) -> list[Rule]:
    """The enabled rules that apply to one sensor: per name, the most specific covering rule."""
    best: dict[str, Rule] = {}
    for rule in rules:
        if not rule.covers(device_id, sensor_id, home_id):
            continue
        held = best.get(rule.name)
        if held is None or (rule.specificity, -rule.id) > (held.specificity, -held.id):
            best[rule.name] = rule
    # A disabled specific rule switches the default off for its scope.
    return sorted((r for r in best.values() if r.enabled), key=lambda r: r.id)


def rule_from_row(row: Any) -> Rule:
    return Rule(
        id=row[0],
        name=row[1],
        kind=Kind(row[2]),
        params=dict(row[3] or {}),
        severity=Severity(row[4]),
        home_id=row[5],
        device_id=row[6],
        sensor_id=row[7],
        enabled=row[8],
    )


RULE_COLUMNS = "id, name, kind, params, severity, home_id, device_id, sensor_id, enabled"
