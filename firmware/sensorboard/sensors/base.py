"""The one interface every probe implements, and the fault codes readings carry.

A read never raises: it returns a fault code (0 for a good value) and leaves the temperature in
``value_e4`` (1/10000 °C, an int, so reading allocates nothing). Fault code ``n`` is
``protocol.FAULT_REASONS[n - 1]``.
"""

from shared.compat import const

OK = const(0)
FAULT_POWER_ON = const(1)
FAULT_DISCONNECTED = const(2)
FAULT_ZERO_SCRATCHPAD = const(3)
FAULT_CRC = const(4)
FAULT_MISSING = const(5)
FAULT_OUT_OF_RANGE = const(6)
FAULT_READ_ERROR = const(7)

# DS18B20 register values (1/16 °C steps) that are not temperatures.
_POWER_ON_RAW = const(0x0550)  # 85.0 °C: the register's reset value, before any conversion
_DISCONNECTED_RAW = const(-2032)  # -127.0 °C, what many drivers report for a lost probe
_MIN_RAW = const(-880)  # -55 °C
_MAX_RAW = const(2000)  # +125 °C


def classify(scratch):
    """``(fault, raw)`` for a DS18B20 9-byte scratchpad whose CRC already checked out (the
    simulated probe goes through it too)."""
    if not any(scratch):
        return FAULT_ZERO_SCRATCHPAD, 0
    raw = scratch[0] | scratch[1] << 8
    if raw & 0x8000:
        raw -= 0x10000
    if raw == _POWER_ON_RAW:
        return FAULT_POWER_ON, raw
    if raw == _DISCONNECTED_RAW:
        return FAULT_DISCONNECTED, raw
    if raw < _MIN_RAW or raw > _MAX_RAW:
        return FAULT_OUT_OF_RANGE, raw
    return OK, raw


class Sensor:
    """A probe. ``start()`` begins a measurement, ``read()`` collects it at least
    ``conversion_ms`` later, so a slow conversion never blocks the loop."""

    conversion_ms = 0

    def __init__(self, sensor_id):
        self.sensor_id = sensor_id
        self.value_e4 = 0
        self.fault = OK
        self.faults = 0  # faulty reads since boot

    def start(self, cycle):
        """Begin a measurement for sampling cycle ``cycle`` (a shared bus converts once)."""

    def measure(self):
        """Return a fault code and set ``value_e4``; implementations override this."""
        return FAULT_READ_ERROR

    def read(self):
        try:
            fault = self.measure()
        except Exception:  # a driver error is a faulty reading, never a dead loop
            fault = FAULT_READ_ERROR
        self.fault = fault
        if fault:
            self.faults += 1
        return fault
