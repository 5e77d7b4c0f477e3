"""A 1-Wire bus as the kernel's w1-therm driver shows it in sysfs, for tests.

Files follow the kernel's exact format: ``w1_slave`` is two lines of nine scratchpad bytes, the
first ending in ``: crc=XX YES|NO`` and the second in ``t=<milli-°C>``.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def dallas_crc8(data: bytes) -> int:
    """The DS18B20 scratchpad CRC (Dallas/Maxim, polynomial x^8 + x^5 + x^4 + 1)."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def scratchpad(celsius: float) -> bytes:
    """Nine scratchpad bytes for a 12-bit reading, with a valid CRC."""
    raw = round(celsius * 16) & 0xFFFF
    body = bytes([raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10])
    return body + bytes([dallas_crc8(body)])


def w1_slave_text(scratch: bytes, crc_ok: bool | None = None, milli: int | None = None) -> str:
    """The two lines the kernel prints; ``crc_ok`` defaults to whether the CRC matches."""
    ok = dallas_crc8(scratch[:8]) == scratch[8] if crc_ok is None else crc_ok
    hexes = " ".join(f"{b:02x}" for b in scratch)
    if milli is None:
        raw = int.from_bytes(scratch[0:2], "little", signed=True)
        milli = int(raw * 1000 / 16)  # the kernel's C division truncates towards zero
    return f"{hexes} : crc={scratch[8]:02x} {'YES' if ok else 'NO'}\n{hexes} t={milli}\n"


class W1Bus:
    """``<root>/28-xxxxxxxxxxxx/w1_slave`` files that a test rewrites as the probes change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def set_celsius(self, rom: str, celsius: float) -> None:
        self.write(rom, w1_slave_text(scratchpad(celsius)))

    def set_crc_failure(self, rom: str, celsius: float = 21.5) -> None:
        bad = bytearray(scratchpad(celsius))
        bad[8] ^= 0x5A
        self.write(rom, w1_slave_text(bytes(bad)))

    def set_power_on(self, rom: str) -> None:
        self.set_celsius(rom, 85.0)

    def set_disconnected(self, rom: str) -> None:
        # What drivers report for a probe without presence pulse (-127 °C), CRC intact.
        self.write(rom, w1_slave_text(scratchpad(-127.0), milli=-127000))

    def set_zero_scratchpad(self, rom: str) -> None:
        self.write(rom, w1_slave_text(bytes(9)))

    def set_temperature_file_only(self, rom: str, milli: int) -> None:
        d = self.root / rom
        d.mkdir(parents=True, exist_ok=True)
        (d / "w1_slave").unlink(missing_ok=True)
        (d / "temperature").write_text(f"{milli}\n")

    def write(self, rom: str, text: str) -> None:
        d = self.root / rom
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "w1_slave.tmp"
        tmp.write_text(text)
        tmp.replace(d / "w1_slave")  # atomic, like a single kernel read

    def remove(self, rom: str) -> None:
        shutil.rmtree(self.root / rom, ignore_errors=True)
