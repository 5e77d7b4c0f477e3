"""SHT3x and BME280 probes on an I2C bus through ``smbus2`` (optional extra ``thermowatch[i2c]``).

The BME280's compensation formulas come from the ``RPi.bme280`` package; the SHT3x needs only a
single-shot command and a CRC-8, written here because the vendor driver pulls in a framework for
what is three bus transactions.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edge.sensors.base import Sensor
from shared import protocol

log = logging.getLogger(__name__)

SHT3X_DEFAULT_ADDRESS = 0x44
BME280_DEFAULT_ADDRESS = 0x76
_SHT3X_SINGLE_SHOT_HIGH = (0x24, [0x00])  # high repeatability, no clock stretching
_SHT3X_MEASURE_S = 0.016


def sht3x_crc(data: bytes) -> int:
    """Sensirion CRC-8 (polynomial 0x31, init 0xFF) over one 16-bit word."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def sht3x_celsius(frame: bytes) -> tuple[float | None, str | None]:
    """Temperature from the 6-byte SHT3x answer (T msb, T lsb, CRC, RH msb, RH lsb, CRC)."""
    if len(frame) < 3:
        return None, protocol.FAULT_READ_ERROR
    if sht3x_crc(frame[0:2]) != frame[2]:
        return None, protocol.FAULT_CRC
    raw = (frame[0] << 8) | frame[1]
    return -45.0 + 175.0 * raw / 65535.0, None


def _open_bus(bus: int) -> Any:
    try:
        import smbus2
    except ImportError as exc:
        raise RuntimeError("I2C sensors need smbus2: pip install 'thermowatch[i2c]'") from exc
    return smbus2.SMBus(bus)


class SHT3xSensor(Sensor):
    """A Sensirion SHT30/31/35 read in single-shot mode; CRC failures are retried once."""

    kind = "sht3x"
    range_c = (-40.0, 125.0)

    def __init__(self, sensor_id: str, bus: int, address: int | None) -> None:
        super().__init__(sensor_id)
        self.address = address if address is not None else SHT3X_DEFAULT_ADDRESS
        self.bus = _open_bus(bus)

    def read(self, now_s: float) -> tuple[float | None, str | None]:
        result: tuple[float | None, str | None] = (None, protocol.FAULT_READ_ERROR)
        for _ in range(2):
            try:
                self.bus.write_i2c_block_data(self.address, *_SHT3X_SINGLE_SHOT_HIGH)
                time.sleep(_SHT3X_MEASURE_S)
                frame = bytes(self.bus.read_i2c_block_data(self.address, 0x00, 6))
            except OSError:
                return None, protocol.FAULT_MISSING  # no ACK: the probe is not on the bus
            result = sht3x_celsius(frame)
            if result[1] != protocol.FAULT_CRC:
                break
        return result

    def close(self) -> None:
        self.bus.close()


class BME280Sensor(Sensor):
    """A Bosch BME280 in forced mode, through the ``RPi.bme280`` compensation code."""

    kind = "bme280"
    range_c = (-40.0, 85.0)

    def __init__(self, sensor_id: str, bus: int, address: int | None) -> None:
        super().__init__(sensor_id)
        try:
            import bme280
        except ImportError as exc:
            raise RuntimeError("BME280 needs RPi.bme280: pip install 'thermowatch[i2c]'") from exc
        self._bme280 = bme280
        self.address = address if address is not None else BME280_DEFAULT_ADDRESS
        self.bus = _open_bus(bus)
        self._calibration: Any = None

    def read(self, now_s: float) -> tuple[float | None, str | None]:
        try:
            if self._calibration is None:
                self._calibration = self._bme280.load_calibration_params(self.bus, self.address)
            data = self._bme280.sample(self.bus, self.address, self._calibration)
        except OSError:
            self._calibration = None  # re-read after the probe comes back (it may be another)
            return None, protocol.FAULT_MISSING
        return float(data.temperature), None

    def close(self) -> None:
        self.bus.close()
