"""Sensors behind one interface (:class:`Sensor`), built by name from config.

Implementations live in their own modules and are imported only when configured, so a gateway
without I2C probes never imports ``smbus2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.sensors.base import Sensor

if TYPE_CHECKING:
    from edge.config import SensorConfig

__all__ = ["Sensor", "build_sensor"]


def build_sensor(config: SensorConfig) -> Sensor:
    """The sensor object for one config entry."""
    if config.type == "ds18b20":
        from edge.sensors.onewire import DS18B20Sensor

        return DS18B20Sensor(config.id, config.w1_devices, config.crc_retries, config.rom)
    if config.type == "cpu":
        from edge.sensors.thermal import CpuSensor

        return CpuSensor(config.id, config.thermal_zone)
    if config.type == "sht3x":
        from edge.sensors.i2c import SHT3xSensor

        return SHT3xSensor(config.id, config.bus, config.address)
    if config.type == "bme280":
        from edge.sensors.i2c import BME280Sensor

        return BME280Sensor(config.id, config.bus, config.address)
    from edge.sensors.simulator import SimulatedSensor

    knobs = config.model_dump(exclude={"type", "id", "sample_period_s", "detect"})
    return SimulatedSensor(config.id, **knobs)
