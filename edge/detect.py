"""Per-sensor detection on the edge: the shared threshold and EWMA detectors.

Their state is saved in the spool with the readings it was computed from, so a restart neither
repeats an alert nor forgets one that is active. Probe faults are not fed to the detectors.
"""

from __future__ import annotations

from typing import Any

from edge.config import DetectorConfig
from edge.spool import EventRow
from edge.validate import Reading
from shared import protocol
from shared.detectors.ewma import EwmaDetector
from shared.detectors.threshold import ThresholdDetector


class SensorDetectors:
    """The detectors configured for one sensor (either, both or none)."""

    def __init__(self, sensor_id: str, config: DetectorConfig) -> None:
        self.sensor_id = sensor_id
        self.threshold: ThresholdDetector | None = None
        self.ewma: EwmaDetector | None = None
        self.configure(config)

    def configure(self, config: DetectorConfig) -> None:
        """Apply new limits (e.g. pushed by the collector) and keep the current state."""
        saved = self.get_state()
        self.threshold = None
        self.ewma = None
        if config.high_c is not None or config.low_c is not None:
            self.threshold = ThresholdDetector(
                high_c=config.high_c,
                low_c=config.low_c,
                hysteresis_c=config.hysteresis_c,
                min_duration_s=config.min_duration_s,
            )
        if config.ewma_alpha is not None:
            self.ewma = EwmaDetector(alpha=config.ewma_alpha, z_limit=config.anomaly_z)
        self.set_state(saved)

    @property
    def active(self) -> bool:
        return self.threshold is not None or self.ewma is not None

    def update(self, reading: Reading) -> list[EventRow]:
        """Events raised by one reading (usually none)."""
        value = reading.value
        if value is None or reading.quality & protocol.Q_PROBE_FAULT:
            return []
        events: list[EventRow] = []
        if self.threshold is not None:
            kind = self.threshold.update(reading.time_ms / 1000.0, value)
            if kind is not None:
                limit = self.threshold.last_limit_c
                events.append(EventRow(self.sensor_id, reading.time_ms, kind, value, limit))
        if self.ewma is not None:
            z, anomaly = self.ewma.update(value)
            if anomaly and z is not None:
                events.append(
                    EventRow(self.sensor_id, reading.time_ms, protocol.EV_ANOMALY, value, z)
                )
        return events

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if getattr(self, "threshold", None) is not None:
            assert self.threshold is not None
            state["threshold"] = self.threshold.get_state()
        if getattr(self, "ewma", None) is not None:
            assert self.ewma is not None
            state["ewma"] = self.ewma.get_state()
        return state

    def set_state(self, state: Any) -> None:
        """Restore saved state; a corrupt entry resets that detector (the shared classes check)."""
        if not isinstance(state, dict):
            return
        if self.threshold is not None and "threshold" in state:
            self.threshold.set_state(state["threshold"])
        if self.ewma is not None and "ewma" in state:
            self.ewma.set_state(state["ewma"])
