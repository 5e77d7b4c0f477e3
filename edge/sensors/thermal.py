"""The SoC temperature from a kernel thermal zone (``temp`` in milli-°C)."""

from __future__ import annotations

import os

from edge.sensors.base import Sensor
from shared import protocol


class CpuSensor(Sensor):
    """Reads ``<thermal_zone>/temp``; a missing zone is a flagged reading, not a crash."""

    kind = "cpu"
    range_c = (-40.0, 150.0)

    def __init__(self, sensor_id: str, thermal_zone: str) -> None:
        super().__init__(sensor_id)
        self.path = os.path.join(thermal_zone, "temp")

    def read(self, now_s: float) -> tuple[float | None, str | None]:
        try:
            with open(self.path) as f:
                text = f.read()
        except FileNotFoundError:
            return None, protocol.FAULT_MISSING
        except OSError:
            return None, protocol.FAULT_READ_ERROR
        try:
            return int(text.strip()) / 1000.0, None
        except ValueError:
            return None, protocol.FAULT_READ_ERROR
