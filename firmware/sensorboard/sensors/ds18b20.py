"""DS18B20 probes on a 1-Wire bus through MicroPython's ``onewire`` module.

The commands are those of micropython-lib's ``ds18x20`` driver, issued on ``onewire.OneWire``
directly so the scratchpad is read into one preallocated buffer and checked here: ``ds18x20``
neither retries a bad CRC nor recognises the all-zero scratchpad (which passes the CRC), the
85 °C power-on value or a disconnected probe.
"""

from sensorboard.sensors import base
from shared.compat import const

_CONVERT = const(0x44)
_READ_SCRATCH = const(0xBE)
_SKIP_ROM = const(0xCC)
_E4_PER_RAW = const(625)  # one raw step is 1/16 °C


def crc8(data):
    """Dallas/Maxim CRC-8 (what ``onewire.OneWire.crc8`` computes), for boards without it."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


class Bus:
    """One 1-Wire bus; converts all its probes at once per sampling cycle."""

    def __init__(self, ow):
        self.ow = ow
        self.cycle = -1
        self.roms = []

    def scan(self):
        self.roms = [rom for rom in self.ow.scan() if rom[0] == 0x28]
        return self.roms

    def convert(self, cycle):
        if cycle == self.cycle:
            return
        self.cycle = cycle
        if self.ow.reset():
            self.ow.writebyte(_SKIP_ROM)
            self.ow.writebyte(_CONVERT)


class DS18B20(base.Sensor):
    """One probe, by ROM code (hex) or, with one probe on the bus, the first found."""

    conversion_ms = 750  # 12-bit resolution

    def __init__(self, sensor_id, bus, rom=None, crc_retries=3):
        base.Sensor.__init__(self, sensor_id)
        self.bus = bus
        self.rom = rom
        self.crc_retries = crc_retries
        self.scratch = bytearray(9)

    def start(self, cycle):
        self.bus.convert(cycle)

    def measure(self):
        ow = self.bus.ow
        if self.rom is None:
            roms = self.bus.scan()
            if not roms:
                return base.FAULT_MISSING
            self.rom = roms[0]
        for _ in range(self.crc_retries):
            if not ow.reset():
                return base.FAULT_DISCONNECTED
            ow.select_rom(self.rom)
            ow.writebyte(_READ_SCRATCH)
            ow.readinto(self.scratch)
            if all_ones(self.scratch):
                return base.FAULT_DISCONNECTED
            if ow.crc8(self.scratch) == 0:
                fault, raw = base.classify(self.scratch)
                if not fault:
                    self.value_e4 = raw * _E4_PER_RAW
                return fault
        return base.FAULT_CRC


def all_ones(buf):
    # A plain loop: all() over a generator would allocate on every read.
    for byte in buf:  # noqa: SIM110
        if byte != 0xFF:
            return False
    return True


def open_bus(pin_number):
    """The bus on a GPIO pin; imported lazily because only boards have ``machine``/``onewire``."""
    import machine
    import onewire

    return Bus(onewire.OneWire(machine.Pin(pin_number)))
