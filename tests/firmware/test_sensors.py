"""Probes under the real MicroPython: the DS18B20 driver against a 1-Wire bus simulated at the
``onewire.OneWire`` interface with real scratchpad bytes, the simulated probe and the RP2040
sensor. A fault is a flagged reading with a reason, never a temperature."""

from __future__ import annotations

from pathlib import Path

from tests.firmware.mp import json_lines, run_on_board

# A bus at the onewire.OneWire interface: scratchpads are 9 real bytes with the Dallas CRC.
FAKE_BUS = """
import json
from sensorboard.sensors import ds18b20, base

class FakeOneWire:
    def __init__(self, pads, present=True):
        self.pads = list(pads)   # successive scratchpad reads
        self.present = present
        self.converts = 0
        self.last = []
    def reset(self, required=False):
        return self.present
    def writebyte(self, b):
        self.last.append(b)
        if b == 0x44:
            self.converts += 1
    def select_rom(self, rom):
        self.rom = rom
    def scan(self):
        return [bytes([0x28, 1, 2, 3, 4, 5, 6, 0x99])] if self.present else []
    def readinto(self, buf):
        pad = self.pads.pop(0) if len(self.pads) > 1 else self.pads[0]
        for i in range(9):
            buf[i] = pad[i]
    def crc8(self, data):
        return ds18b20.crc8(data)

def pad(hex8):
    raw = bytes.fromhex(hex8)
    return raw + bytes([ds18b20.crc8(raw)])

def read(pads, present=True, rom=None):
    bus = ds18b20.Bus(FakeOneWire(pads, present))
    probe = ds18b20.DS18B20("t1", bus, rom)
    probe.start(1)
    fault = probe.read()
    return {"fault": base.FAULTS[fault] if fault else None, "value_e4": probe.value_e4,
            "converts": bus.ow.converts}
"""


def test_ds18b20_readings_and_faults(micropython_bin: str, firmware_build: Path) -> None:
    code = (
        FAKE_BUS.replace("base.FAULTS[fault]", "FAULTS[fault - 1]")
        + """
from shared.protocol import FAULT_REASONS as FAULTS
print(json.dumps(read([pad("51017F467FFF0C10")])))            # 0x0151 = 21.0625 C
print(json.dumps(read([pad("50054B467FFF0C10")])))            # 85.0 C power-on value
print(json.dumps(read([bytes(9)])))                          # all zeros: CRC passes
print(json.dumps(read([pad("10F84B467FFF0C10")])))            # -127 C
print(json.dumps(read([b"\\xff" * 9])))                       # bus pulled high: gone
print(json.dumps(read([pad("51017F467FFF0C10")], False, b"\x28abcdefg")))  # no presence pulse
bad = bytearray(pad("51017F467FFF0C10")); bad[8] ^= 0x55
print(json.dumps(read([bytes(bad), bytes(bad), pad("61017F467FFF0C10")])))  # CRC burst, retry ok
print(json.dumps(read([bytes(bad)])))                         # CRC bad on every retry
print(json.dumps(read([pad("E0077F467FFF0C10")])))            # 126 C: beyond the datasheet
print(json.dumps(read([pad("5EFF7F467FFF0C10")])))            # -10.125 C
print(ds18b20.crc8(bytes.fromhex("50054B467FFF0C10")))
"""
    )
    results = json_lines(run_on_board(micropython_bin, firmware_build, code))
    faults = [r["fault"] for r in results[:10]]
    assert faults == [
        None,
        "power_on",
        "zero_scratchpad",
        "disconnected",
        "disconnected",
        "disconnected",
        None,
        "crc",
        "out_of_range",
        None,
    ]
    assert results[0]["value_e4"] == 210625
    assert results[6]["value_e4"] == 220625  # the retried read, 0x0161 = 22.0625 C
    assert results[9]["value_e4"] == -101250
    assert results[0]["converts"] == 1


def test_crc8_matches_the_power_on_scratchpad(micropython_bin: str, firmware_build: Path) -> None:
    code = "from sensorboard.sensors import ds18b20\n" + (
        "print(hex(ds18b20.crc8(bytes.fromhex('50054B467FFF0C10'))))"
    )
    assert run_on_board(micropython_bin, firmware_build, code).strip() == "0x1c"


def test_missing_probe_is_a_fault(micropython_bin: str, firmware_build: Path) -> None:
    code = (
        FAKE_BUS
        + """
bus = ds18b20.Bus(FakeOneWire([bytes(9)], present=True))
bus.ow.scan = lambda: []
probe = ds18b20.DS18B20("t1", bus)
print(probe.read(), probe.faults)
"""
    )
    assert run_on_board(micropython_bin, firmware_build, code).split() == ["5", "1"]


def test_simulated_probe_goes_through_the_same_fault_checks(
    micropython_bin: str, firmware_build: Path
) -> None:
    code = """
from sensorboard.sensors.sim import SimProbe
p = SimProbe("t2", script=[21.5, 85.0, None, "zero_scratchpad", 150.0, -4.25])
out = []
for _ in range(7):
    fault = p.read()
    out.append(str(fault) + ":" + str(p.value_e4 if not fault else "-"))
print(" ".join(out))
"""
    out = run_on_board(micropython_bin, firmware_build, code).split()
    assert out == ["0:215000", "1:-", "2:-", "3:-", "6:-", "0:-42500", "0:215000"]


def test_simulated_probe_wave_stays_in_its_band(micropython_bin: str, firmware_build: Path) -> None:
    code = """
from sensorboard.sensors.sim import SimProbe
p = SimProbe("t1", base_c=20.0, swing_c=2.0, period_samples=10)
vals = []
for _ in range(20):
    p.read()
    vals.append(p.value_e4)
print(min(vals), max(vals), len(set(vals)))
"""
    low, high, distinct = map(int, run_on_board(micropython_bin, firmware_build, code).split())
    assert (low, high) == (180000, 220000)
    assert distinct > 3


def test_rp2040_internal_sensor_converts_the_adc(
    micropython_bin: str, firmware_build: Path
) -> None:
    code = """
from sensorboard.sensors.rp2040 import RP2040Internal
class Adc:
    def __init__(self, v): self.v = v
    def read_u16(self): return self.v
for raw in (14020, 13000, 0):
    s = RP2040Internal("board", Adc(raw))
    print(s.read(), s.value_e4)
"""
    out = run_on_board(micropython_bin, firmware_build, code)
    lines = [line.split() for line in out.splitlines() if line]
    assert lines[0][0] == "0" and abs(int(lines[0][1]) - 270000) < 500  # 0.706 V is 27 C
    assert lines[1][0] == "0" and 560000 < int(lines[1][1]) < 580000  # lower voltage: warmer
    assert lines[2][0] == "6"  # 0 V would be 437 C: out of range
