"""The one interface every polled sensor implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared import protocol

# What a DS18B20 can measure; other probes narrow or widen it.
DS18B20_RANGE_C = (-55.0, 125.0)


class Sensor(ABC):
    """A probe read on a schedule. ``read`` never raises for a probe problem: it returns
    ``(None, fault_reason)`` so the fault becomes a flagged reading."""

    kind = "sensor"
    range_c: tuple[float, float] = (-60.0, 150.0)

    def __init__(self, sensor_id: str) -> None:
        if not protocol.valid_id(sensor_id):
            raise ValueError(f"invalid sensor id {sensor_id!r}")
        self.sensor_id = sensor_id

    @abstractmethod
    def read(self, now_s: float) -> tuple[float | None, str | None]:
        """``(celsius, None)`` or ``(None, fault)``; ``now_s`` is the sampling time."""

    def close(self) -> None:
        """Release the bus or file handles; the default holds none."""
        return None


def classify_ds18b20(celsius: float) -> str | None:
    """The fault a DS18B20 value stands for, or ``None`` for a real temperature.

    85.0 is what the scratchpad holds after power-on before a conversion finished; -127 is what
    drivers report for a probe without presence pulse. A real 85.0 °C is indistinguishable, and
    far above what these probes are deployed for, so it is flagged rather than trusted.
    """
    if celsius == 85.0:
        return protocol.FAULT_POWER_ON
    if celsius <= -127.0:
        return protocol.FAULT_DISCONNECTED
    if not DS18B20_RANGE_C[0] <= celsius <= DS18B20_RANGE_C[1]:
        return protocol.FAULT_OUT_OF_RANGE
    return None
