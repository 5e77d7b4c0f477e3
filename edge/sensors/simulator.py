"""A simulated probe for demos, tests and benchmarks.

It produces what real deployments see: a diurnal cycle, noise, slow drift, steps, spikes, a stuck
value, dropouts and the DS18B20's 85 °C power-on value. Everything derives from the seed and the
sampling time, so a run can be reproduced.
"""

from __future__ import annotations

import math
import random

from edge.sensors.base import DS18B20_RANGE_C, Sensor, classify_ds18b20
from shared import protocol


class SimulatedSensor(Sensor):
    """Synthetic DS18B20-like probe; see :class:`edge.config.SimulatorConfig` for the knobs."""

    kind = "simulator"
    range_c = DS18B20_RANGE_C

    def __init__(
        self,
        sensor_id: str,
        *,
        seed: int = 0,
        base_c: float = 20.0,
        diurnal_amplitude_c: float = 3.0,
        diurnal_period_s: float = 86400.0,
        noise_c: float = 0.05,
        drift_c_per_h: float = 0.0,
        step_c: float = 0.0,
        step_every_s: float = 0.0,
        spike_probability: float = 0.0,
        spike_c: float = 15.0,
        dropout_probability: float = 0.0,
        stuck_probability: float = 0.0,
        stuck_duration_s: float = 30.0,
        power_on_reading: bool = False,
    ) -> None:
        super().__init__(sensor_id)
        self.random = random.Random(f"{seed}:{sensor_id}")
        self.base_c = base_c
        self.diurnal_amplitude_c = diurnal_amplitude_c
        self.diurnal_period_s = diurnal_period_s
        self.noise_c = noise_c
        self.drift_c_per_h = drift_c_per_h
        self.step_c = step_c
        self.step_every_s = step_every_s
        self.spike_probability = spike_probability
        self.spike_c = spike_c
        self.dropout_probability = dropout_probability
        self.stuck_probability = stuck_probability
        self.stuck_duration_s = stuck_duration_s
        self.power_on_pending = power_on_reading
        self.started_s: float | None = None
        self.stuck_until_s = -math.inf
        self.last_value = base_c

    def true_value(self, now_s: float) -> float:
        """The noiseless value at ``now_s`` (cycle + drift + steps)."""
        if self.started_s is None:
            self.started_s = now_s
        elapsed = now_s - self.started_s
        value = self.base_c + self.diurnal_amplitude_c * math.sin(
            2 * math.pi * now_s / self.diurnal_period_s
        )
        value += self.drift_c_per_h * elapsed / 3600.0
        if self.step_every_s > 0:
            value += self.step_c * math.floor(elapsed / self.step_every_s)
        return value

    def read(self, now_s: float) -> tuple[float | None, str | None]:
        rnd = self.random
        if self.power_on_pending:
            self.power_on_pending = False
            return None, classify_ds18b20(85.0)
        if self.dropout_probability and rnd.random() < self.dropout_probability:
            return None, protocol.FAULT_CRC
        if now_s < self.stuck_until_s:
            return self.last_value, None
        if self.stuck_probability and rnd.random() < self.stuck_probability:
            self.stuck_until_s = now_s + self.stuck_duration_s
            return self.last_value, None
        value = self.true_value(now_s) + rnd.gauss(0.0, self.noise_c)
        if self.spike_probability and rnd.random() < self.spike_probability:
            value += self.spike_c
        # A DS18B20 reports in 1/16 °C steps; the simulator does too.
        value = round(value * 16) / 16
        fault = classify_ds18b20(value)
        if fault:
            return None, fault
        self.last_value = value
        return value, None
