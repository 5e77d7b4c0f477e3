"""DS18B20 probes through the Linux w1-therm driver's sysfs files.

``w1_slave`` holds two lines, for example::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

The first line carries the scratchpad bytes and the kernel's CRC verdict, the second the value in
milli-°C. Newer kernels also have ``temperature`` (milli-°C only); it is used when ``w1_slave`` is
absent. Reading either file triggers a conversion (~750 ms at 12 bits), so the agent reads each
probe in its own thread.
"""

from __future__ import annotations

import logging
import os

from edge.sensors.base import DS18B20_RANGE_C, Sensor, classify_ds18b20
from shared import protocol

log = logging.getLogger(__name__)


def parse_w1_slave(text: str) -> tuple[float | None, str | None]:
    """One ``w1_slave`` read as ``(celsius, None)`` or ``(None, fault)``."""
    lines = text.strip().splitlines()
    if len(lines) < 2 or "crc=" not in lines[0] or "t=" not in lines[1]:
        return None, protocol.FAULT_READ_ERROR
    bytes_part, _, verdict = lines[0].partition(":")
    if not verdict.strip().endswith("YES"):
        scratch = bytes_part.split()
        if scratch and all(b.lower() == "ff" for b in scratch):
            return None, protocol.FAULT_DISCONNECTED  # the bus read back all ones: no probe
        return None, protocol.FAULT_CRC
    scratch = bytes_part.split()
    if scratch and all(b == "00" for b in scratch):
        # All zeroes pass the Dallas CRC (crc=00) and would read as 0.0 °C.
        return None, protocol.FAULT_ZERO_SCRATCHPAD
    try:
        milli = int(lines[1].rpartition("t=")[2])
    except ValueError:
        return None, protocol.FAULT_READ_ERROR
    celsius = milli / 1000.0
    fault = classify_ds18b20(celsius)
    return (None, fault) if fault else (celsius, None)


def parse_temperature_file(text: str) -> tuple[float | None, str | None]:
    """The newer ``temperature`` file: milli-°C, no CRC line (the kernel fails the read)."""
    try:
        celsius = int(text.strip()) / 1000.0
    except ValueError:
        return None, protocol.FAULT_READ_ERROR
    fault = classify_ds18b20(celsius)
    return (None, fault) if fault else (celsius, None)


class DS18B20Sensor(Sensor):
    """One probe under ``<w1_devices>/<rom id>/``; CRC failures are retried before flagging."""

    kind = "ds18b20"
    range_c = DS18B20_RANGE_C

    def __init__(
        self, sensor_id: str, w1_devices: str, crc_retries: int = 2, rom: str | None = None
    ) -> None:
        super().__init__(sensor_id)
        self.directory = os.path.join(w1_devices, rom or sensor_id)
        self.crc_retries = crc_retries
        self.crc_errors = 0

    def _read_once(self) -> tuple[float | None, str | None]:
        slave = os.path.join(self.directory, "w1_slave")
        try:
            with open(slave) as f:
                return parse_w1_slave(f.read())
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("sensor %s: w1_slave read failed: %s", self.sensor_id, exc)
            return None, protocol.FAULT_READ_ERROR
        try:
            with open(os.path.join(self.directory, "temperature")) as f:
                return parse_temperature_file(f.read())
        except FileNotFoundError:
            return None, protocol.FAULT_MISSING
        except OSError as exc:  # the kernel reports a CRC failure on this file as EIO
            log.warning("sensor %s: temperature read failed: %s", self.sensor_id, exc)
            return None, protocol.FAULT_CRC

    def read(self, now_s: float) -> tuple[float | None, str | None]:
        result = self._read_once()
        retries = 0
        while result[1] == protocol.FAULT_CRC and retries < self.crc_retries:
            self.crc_errors += 1
            retries += 1
            result = self._read_once()
        if result[1] == protocol.FAULT_CRC:
            self.crc_errors += 1
        return result


def discover(w1_devices: str) -> list[str]:
    """ROM ids of the DS18B20 probes (family 28) the kernel sees now."""
    try:
        names = os.listdir(w1_devices)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith("28-") and protocol.valid_id(n))
