"""Alert messages in plain language, e.g. "Freezer in Garage is -4.2 °C, above -10 °C for 15 min".

One function per moment (firing, resolved); each rule kind says what happened in words a
homeowner reads on a phone lock screen, with units and no internal names.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.alerts.rules import Kind


@dataclass(frozen=True, slots=True)
class Subject:
    """What an alert is about, named as people named it (label, device name) where they did."""

    device_id: str
    sensor_id: str
    sensor_label: str | None = None
    device_name: str | None = None

    @property
    def where(self) -> str:
        device = self.device_name or self.device_id
        if not self.sensor_id:
            return device
        return f"{self.sensor_label or self.sensor_id} in {device}"


def celsius(value: float | None) -> str:
    if value is None:
        return "unknown"
    text = f"{value:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return "0" if text == "-0" else text


def duration(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 90:
        return f"{round(s)} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    if s < 48 * 3600:
        hours = s / 3600
        return f"{hours:.1f} h".replace(".0 h", " h")
    return f"{round(s / 86400)} days"


def firing(
    kind: Kind,
    subject: Subject,
    *,
    value: float | None,
    observed: float | None,
    limit: float | None,
    direction: str,
    for_s: float,
    fault: str | None = None,
) -> str:
    where = subject.where
    if kind is Kind.threshold:
        return (
            f"{where} is {celsius(value)} °C, {direction or 'past'} {celsius(limit)} °C "
            f"for {duration(for_s)}"
        )
    if kind is Kind.rate:
        verb = "rising" if (observed or 0) > 0 else "falling"
        return (
            f"{where} is {verb} {celsius(abs(observed or 0))} °C per hour "
            f"(limit {celsius(abs(limit or 0))} °C per hour), now {celsius(value)} °C"
        )
    if kind is Kind.anomaly:
        score = f" (score {observed:.1f})" if observed is not None else ""
        return f"{where} reads {celsius(value)} °C, which is unusual for it{score}"
    if kind is Kind.stale:
        return f"{where} has not reported for {duration(for_s)}"
    if kind is Kind.offline:
        return f"{where} is offline: nothing heard for {duration(for_s)}"
    reason = f" ({fault.replace('_', ' ')})" if fault else ""
    return f"The probe of {where} has reported only faults{reason} for {duration(for_s)}"


def resolved(kind: Kind, subject: Subject, *, value: float | None, lasted_s: float) -> str:
    where = subject.where
    lasted = duration(lasted_s)
    if kind in (Kind.threshold, Kind.rate, Kind.anomaly):
        return f"Resolved: {where} is back to normal at {celsius(value)} °C (after {lasted})"
    if kind is Kind.stale:
        return f"Resolved: {where} is reporting again (silent for {lasted})"
    if kind is Kind.offline:
        return f"Resolved: {where} is back online (offline for {lasted})"
    return f"Resolved: the probe of {where} reads again (faulty for {lasted})"
