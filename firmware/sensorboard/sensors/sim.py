"""A simulated DS18B20 for the unix port and demos: it produces raw 1/16 °C register values and
sends them through the same fault classification as the real probe.

``script`` (a list of °C values, ``null`` for a lost probe, ``"zero_scratchpad"`` for a scratchpad
of zeros) is played in order and then repeated; without it the value is a slow triangle wave
around ``base_c``.
"""

from sensorboard.sensors import base
from shared.compat import const

_ZERO_SCRATCHPAD = const(0x7FFF)  # marker in a script; not a value the register can hold
_CONFIG_12BIT = const(0x7F)


class SimProbe(base.Sensor):
    conversion_ms = 0

    def __init__(self, sensor_id, base_c=21.0, swing_c=2.0, period_samples=120, script=None):
        base.Sensor.__init__(self, sensor_id)
        self.base_raw = int(base_c * 16)
        self.swing_raw = int(swing_c * 16)
        self.period = max(2, int(period_samples))
        self.step = 0
        self.scratch = bytearray(9)
        self.script = None
        if script:
            # Preconverted to raw ints so playing it back allocates nothing.
            self.script = [_script_raw(v) for v in script]

    def _raw(self):
        if self.script:
            return self.script[self.step % len(self.script)]
        half = self.period // 2
        phase = self.step % self.period
        ramp = phase if phase < half else self.period - phase
        return self.base_raw - self.swing_raw + 2 * self.swing_raw * ramp // half

    def measure(self):
        raw = self._raw()
        self.step += 1
        scratch = self.scratch
        if raw == _ZERO_SCRATCHPAD:
            for i in range(9):
                scratch[i] = 0
        else:
            scratch[0] = raw & 0xFF
            scratch[1] = (raw >> 8) & 0xFF
            scratch[4] = _CONFIG_12BIT
        fault, raw = base.classify(self.scratch)
        if not fault:
            self.value_e4 = raw * 625
        return fault


def _script_raw(value):
    if value is None:
        return -2032
    if value == "zero_scratchpad":
        return _ZERO_SCRATCHPAD
    return round(value * 16)
