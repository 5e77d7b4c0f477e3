"""``thermowatch replay``: run the detectors over a recorded series and print what they raise.

Input is a CSV with the columns ``time,sensor_id,value`` (a header line is optional). ``time`` is
ISO-8601 (UTC unless it names an offset) or UTC seconds since 1970; an empty ``value`` is a probe
fault. Rows that cannot be used are counted and reported with their line number and a reason; the
rest is replayed. Each sensor's series runs through the vectorised detectors (the same outputs as
the boards' and edge agent's scalar detectors) in time order.

Event producers are plain functions ``(sensor_id, times, values) -> list[ReplayEvent]``; replaying
other kinds of rules means adding one to the list :func:`replay_series` gets.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import typer

from collector.alerts.backtest import WouldBeAlert, backtest
from collector.alerts.evaluate import Sample
from collector.alerts.messages import Subject
from collector.alerts.rules import Kind, Rule, RuleError, Severity, validate_params
from shared.detectors import ewma as ewma_defaults
from shared.detectors import threshold as threshold_defaults
from shared.detectors.ewma import EwmaDetector
from shared.detectors.threshold import ThresholdDetector
from shared.detectors.vectorized import ewma_series, threshold_series
from shared.protocol import EV_ANOMALY, valid_id

FloatArray = npt.NDArray[np.float64]
HEADER = ("time", "sensor_id", "value")
# Enough to see what is wrong with a file without flooding the terminal.
MAX_REJECTS_SHOWN = 20


@dataclass(frozen=True)
class ReplayEvent:
    """One event a detector would have raised: when, for which sensor, and why."""

    time_s: float
    sensor_id: str
    kind: str
    value: float | None
    detail: float | None  # the limit for threshold events, the z-score for anomalies
    source: str  # which detector raised it

    def as_dict(self) -> dict[str, object]:
        return {
            "time": format_time(self.time_s),
            "t_s": self.time_s,
            "sensor_id": self.sensor_id,
            "kind": self.kind,
            "value": self.value,
            "detail": self.detail,
            "source": self.source,
        }


@dataclass(frozen=True)
class SensorSeries:
    """One sensor's samples in time order; NaN values are probe faults."""

    times: FloatArray
    values: FloatArray


@dataclass
class LoadedCsv:
    """What a CSV file held: the usable series per sensor and the rows refused (line, reason)."""

    series: dict[str, SensorSeries] = field(default_factory=dict)
    rows: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


SeriesDetector = Callable[[str, FloatArray, FloatArray], list[ReplayEvent]]


def format_time(t_s: float) -> str:
    """UTC seconds as ISO-8601 with a ``Z``; milliseconds only when the time has them."""
    stamp = datetime.fromtimestamp(t_s, UTC)
    spec = "milliseconds" if stamp.microsecond else "seconds"
    return stamp.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_time(text: str) -> float | None:
    """UTC seconds from epoch seconds or ISO-8601 text; None when it is neither."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            return None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    return seconds if math.isfinite(seconds) else None


def _parse_row(row: Sequence[str]) -> tuple[float, str, float] | str:
    """``(time_s, sensor_id, value)`` with NaN for a fault, or the reason the row is refused."""
    if len(row) != 3:
        return "malformed_row"
    time_s = parse_time(row[0])
    if time_s is None:
        return "bad_time"
    sensor_id = row[1].strip()
    if not valid_id(sensor_id):
        return "bad_sensor_id"
    text = row[2].strip()
    if not text:
        return time_s, sensor_id, math.nan
    try:
        value = float(text)
    except ValueError:
        return "bad_value"
    if not math.isfinite(value):
        return "not_a_number"
    return time_s, sensor_id, value


def load_csv(lines: Iterable[str]) -> LoadedCsv:
    """Read ``time,sensor_id,value`` rows; bad rows are refused with a reason, never raised."""
    loaded = LoadedCsv()
    samples: dict[str, list[tuple[float, float]]] = {}
    reader = csv.reader(lines)
    for row in reader:
        line = reader.line_num
        loaded.rows += 1
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
            continue
        if line == 1 and tuple(c.strip().lower() for c in row) == HEADER:
            continue
        parsed = _parse_row(row)
        if isinstance(parsed, str):
            loaded.rejected.append((line, parsed))
            continue
        time_s, sensor_id, value = parsed
        samples.setdefault(sensor_id, []).append((time_s, value))
    for sensor_id, pairs in samples.items():
        # Stable: rows with the same time keep the file's order.
        pairs.sort(key=lambda pair: pair[0])
        arr = np.array(pairs, dtype=np.float64)
        loaded.series[sensor_id] = SensorSeries(arr[:, 0].copy(), arr[:, 1].copy())
    return loaded


def _optional(x: float) -> float | None:
    return None if math.isnan(x) else x


def threshold_detector(
    *,
    high_c: float | None,
    low_c: float | None,
    hysteresis_c: float,
    min_duration_s: float,
    clear_duration_s: float | None = None,
) -> SeriesDetector:
    """A threshold detector with these settings, for :func:`replay_series`.

    Raises ValueError at once for impossible settings, before any file is read."""
    ThresholdDetector(high_c, low_c, hysteresis_c, min_duration_s, clear_duration_s)

    def detect(sensor_id: str, times: FloatArray, values: FloatArray) -> list[ReplayEvent]:
        out = threshold_series(
            times,
            values,
            high_c=high_c,
            low_c=low_c,
            hysteresis_c=hysteresis_c,
            min_duration_s=min_duration_s,
            clear_duration_s=clear_duration_s,
        )
        return [
            ReplayEvent(
                float(times[i]), sensor_id, kind, _optional(float(values[i])), limit, "threshold"
            )
            for i, kind, limit in zip(out.index, out.kind, out.limit_c, strict=True)
        ]

    return detect


def anomaly_detector(
    *, alpha: float, z_limit: float, warmup: int, min_std_c: float
) -> SeriesDetector:
    """An EWMA anomaly detector with these settings, for :func:`replay_series`.

    Raises ValueError at once for impossible settings, before any file is read."""
    EwmaDetector(alpha, z_limit, warmup, min_std_c)

    def detect(sensor_id: str, times: FloatArray, values: FloatArray) -> list[ReplayEvent]:
        out = ewma_series(values, alpha=alpha, z_limit=z_limit, warmup=warmup, min_std_c=min_std_c)
        return [
            ReplayEvent(
                float(times[i]),
                sensor_id,
                EV_ANOMALY,
                float(values[i]),
                float(out.z[i]),
                "ewma",
            )
            for i in np.flatnonzero(out.anomaly).tolist()
        ]

    return detect


def load_rules(path: Path) -> list[tuple[Rule, str | None]]:
    """Alert rules from a JSON file: a list of ``{"name", "kind", "params", "severity",
    "sensor_id"}`` objects (the same fields as the rules API). Raises ValueError naming the rule
    that is wrong."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of rules")
    rules: list[tuple[Rule, str | None]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"rule {i + 1}: expected an object")
        try:
            kind = Kind(str(item.get("kind")))
            rule = Rule(
                id=i + 1,
                name=str(item.get("name") or kind.value),
                kind=kind,
                params=validate_params(kind, item.get("params") or {}),
                severity=Severity(item.get("severity", Severity.warning)),
            )
        except (ValueError, RuleError) as exc:
            raise ValueError(f"rule {i + 1} ({item.get('name', '?')}): {exc}") from None
        rules.append((rule, item.get("sensor_id")))
    return rules


def rule_detector(
    rule: Rule, *, device: str, only_sensor: str | None, found: list[WouldBeAlert]
) -> SeriesDetector:
    """An alert rule as a detector for :func:`replay_series`: the collector's own evaluation
    (hysteresis, durations, flap window) over the series; the alerts it would have raised are
    also appended to ``found`` with their plain-language messages."""

    def detect(sensor_id: str, times: FloatArray, values: FloatArray) -> list[ReplayEvent]:
        if only_sensor is not None and sensor_id != only_sensor:
            return []
        samples = [
            Sample(round(t * 1000), None, "read_error")
            if math.isnan(v)
            else Sample(round(t * 1000), v)
            for t, v in zip(times.tolist(), values.tolist(), strict=True)
        ]
        alerts = backtest(rule, Subject(device, sensor_id), samples)
        found.extend(alerts)
        events = []
        for a in alerts:
            events.append(
                ReplayEvent(
                    a.fired_ms / 1000, sensor_id, "alert_firing", a.value, a.limit, rule.name
                )
            )
            if a.resolved_ms is not None:
                events.append(
                    ReplayEvent(
                        a.resolved_ms / 1000, sensor_id, "alert_resolved", None, None, rule.name
                    )
                )
        return events

    return detect


def replay_series(
    series: dict[str, SensorSeries], detectors: Sequence[SeriesDetector]
) -> list[ReplayEvent]:
    """Every event of every detector over every sensor, in time order."""
    events: list[ReplayEvent] = []
    for sensor_id, s in series.items():
        for detect in detectors:
            events += detect(sensor_id, s.times, s.values)
    events.sort(key=lambda e: (e.time_s, e.sensor_id))
    return events


def _number(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}".rstrip("0").rstrip(".")


def format_alerts(alerts: Sequence[WouldBeAlert]) -> str:
    """The alerts rules would have raised, as their notifications would have read."""
    lines = [f"{len(alerts)} alerts would have been raised:"]
    for a in sorted(alerts, key=lambda a: a.fired_ms):
        until = (
            f"resolved {format_time(a.resolved_ms / 1000)}"
            if a.resolved_ms is not None
            else "still firing at the end"
        )
        lines.append(
            f"  {format_time(a.fired_ms / 1000)} [{a.severity}] {a.rule}: {a.message} ({until})"
        )
    return "\n".join(lines)


def format_table(events: Sequence[ReplayEvent]) -> str:
    """Events as aligned text columns."""
    rows = [("time", "sensor", "event", "value", "detail")]
    for e in events:
        detail = _number(e.detail)
        detail = ("z " if e.kind == EV_ANOMALY else "limit ") + detail
        rows.append((format_time(e.time_s), e.sensor_id, e.kind, _number(e.value), detail))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def replay(
    csv_path: Annotated[
        Path,
        typer.Argument(
            help="CSV with time,sensor_id,value (empty value = probe fault).",
            metavar="CSV",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    high_c: Annotated[float | None, typer.Option(help="High limit, °C.")] = None,
    low_c: Annotated[float | None, typer.Option(help="Low limit, °C.")] = None,
    hysteresis_c: Annotated[
        float, typer.Option(min=0.0, help="How far back inside a limit clears it, °C.")
    ] = threshold_defaults.DEFAULT_HYSTERESIS_C,
    min_duration_s: Annotated[
        float, typer.Option(min=0.0, help="How long past a limit before it fires (and clears), s.")
    ] = threshold_defaults.DEFAULT_MIN_DURATION_S,
    alpha: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="EWMA weight of the newest sample.")
    ] = ewma_defaults.DEFAULT_ALPHA,
    z_limit: Annotated[
        float, typer.Option(min=0.0, help="|z| above this is an anomaly.")
    ] = ewma_defaults.DEFAULT_Z_LIMIT,
    warmup: Annotated[
        int, typer.Option(min=0, help="Valid samples before anomalies are reported.")
    ] = ewma_defaults.DEFAULT_WARMUP,
    min_std_c: Annotated[
        float, typer.Option(min=0.0, help="Floor of the standard deviation used for z, °C.")
    ] = ewma_defaults.DEFAULT_MIN_STD_C,
    anomalies: Annotated[
        bool, typer.Option("--anomalies/--no-anomalies", help="Run the EWMA anomaly detector.")
    ] = True,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per event instead of a table.")
    ] = False,
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="JSON list of alert rules (as in the rules API) to backtest; prints the alerts "
            "they would have raised.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
) -> None:
    """Replay a series through the detectors and print the events they raise."""
    detectors: list[SeriesDetector] = []
    try:
        if high_c is not None or low_c is not None:
            detectors.append(
                threshold_detector(
                    high_c=high_c,
                    low_c=low_c,
                    hysteresis_c=hysteresis_c,
                    min_duration_s=min_duration_s,
                )
            )
        if anomalies:
            detectors.append(
                anomaly_detector(alpha=alpha, z_limit=z_limit, warmup=warmup, min_std_c=min_std_c)
            )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    would_be: list[WouldBeAlert] = []
    if rules is not None:
        try:
            loaded_rules = load_rules(rules)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--rules") from None
        detectors += [
            rule_detector(rule, device=csv_path.stem, only_sensor=sensor, found=would_be)
            for rule, sensor in loaded_rules
        ]
    if not detectors:
        raise typer.BadParameter("nothing to replay: give --high-c/--low-c or --anomalies")

    with csv_path.open(newline="", encoding="utf-8", errors="replace") as f:
        loaded = load_csv(f)
    events = replay_series(loaded.series, detectors)

    if json_lines:
        for e in events:
            typer.echo(json.dumps(e.as_dict()))
    elif events:
        typer.echo(format_table(events))
    if would_be and not json_lines:
        typer.echo("")
        typer.echo(format_alerts(would_be))
    samples = sum(len(s.times) for s in loaded.series.values())
    faults = sum(int(np.isnan(s.values).sum()) for s in loaded.series.values())
    summary = (
        f"{samples} samples ({faults} probe faults) from {len(loaded.series)} sensors, "
        f"{len(events)} events, {len(loaded.rejected)} rows refused"
    )
    if loaded.rejected:
        reasons = Counter(reason for _, reason in loaded.rejected)
        summary += " (" + ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items())) + ")"
    typer.echo(summary, err=True)
    for line, reason in loaded.rejected[:MAX_REJECTS_SHOWN]:
        typer.echo(f"  line {line}: {reason}", err=True)
    if len(loaded.rejected) > MAX_REJECTS_SHOWN:
        typer.echo(f"  ... {len(loaded.rejected) - MAX_REJECTS_SHOWN} more", err=True)
