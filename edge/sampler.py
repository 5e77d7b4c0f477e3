"""Sampling: one loop per sensor that reads it every period and stamps each sample with its time.

Times of one sensor strictly increase. The collector stores one reading per sensor and
millisecond, so two samples stamped alike would lose one as a "duplicate": that happens when a
late wake-up (a stalled bus, a busy CPU) makes the loop sample again at once, within the same
millisecond. Such a sample is stamped one millisecond after the previous one instead. If the
wall clock steps back, samples keep counting up from the last time until the clock passes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge.sensors import Sensor
from shared import protocol

log = logging.getLogger(__name__)

# (sensor id, time in ms, value or None, fault or None, the probe's range in °C)
Sample = tuple[str, int, float | None, str | None, tuple[float, float]]


class Sampler:
    """Reads one sensor every ``period_s()`` seconds and hands each sample to ``emit``."""

    def __init__(
        self,
        sensor: Sensor,
        *,
        period_s: Callable[[], float],
        emit: Callable[[Sample], None],
        wait: Callable[[float], bool],
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sensor = sensor
        self._period_s = period_s
        self._emit = emit
        self._wait = wait  # sleeps up to the delay; True means stop
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._last_ms: int | None = None

    def stamp(self, now_s: float) -> int:
        """The time in ms of a sample taken at ``now_s``: never at or before the previous one."""
        t = int(now_s * 1000)
        if self._last_ms is not None and t <= self._last_ms:
            t = self._last_ms + 1
        self._last_ms = t
        return t

    def sample(self) -> None:
        now = self._wall_clock()
        sensor = self.sensor
        try:
            value, fault = sensor.read(now)
        except Exception:  # a driver bug must become a flagged reading, not a dead thread
            log.exception("sensor %s read failed", sensor.sensor_id)
            value, fault = None, protocol.FAULT_READ_ERROR
        self._emit((sensor.sensor_id, self.stamp(now), value, fault, sensor.range_c))

    def run(self) -> None:
        """Sample until ``wait`` says stop."""
        next_at = self._monotonic()
        while True:
            self.sample()
            next_at += self._period_s()
            delay = next_at - self._monotonic()
            if delay < 0:
                next_at = self._monotonic()  # fell behind (slow bus): do not burst to catch up
                delay = 0
            if self._wait(delay):
                return
