"""The shared detectors (``shared.detectors``, the same code the edge agent runs) per sensor.

Settings come from ``detectors`` in the config (for all sensors) and may be overridden by a
sensor's own ``threshold``/``ewma`` object; a setting the detector refuses is a config error,
not a crash.
"""

from shared import protocol

_KIND_CODE = {}
for _i in range(len(protocol.EVENT_KINDS)):
    _KIND_CODE[protocol.EVENT_KINDS[_i]] = _i + 1
ANOMALY_CODE = _KIND_CODE[protocol.EV_ANOMALY]
_Z_LIMIT_E4 = 2000000000


def kind_code(kind):
    """Record code of an event kind (``protocol.EVENT_KINDS`` index + 1)."""
    return _KIND_CODE[kind]


class SensorDetectors:
    """A threshold and/or EWMA detector for one sensor (either may be absent)."""

    def __init__(self, threshold=None, ewma=None):
        self.threshold = threshold
        self.ewma = ewma

    def get_state(self):
        return [
            self.threshold.get_state() if self.threshold else None,
            self.ewma.get_state() if self.ewma else None,
        ]

    def set_state(self, saved):
        try:
            if self.threshold and saved[0] is not None:
                self.threshold.set_state(saved[0])
            if self.ewma and saved[1] is not None:
                self.ewma.set_state(saved[1])
        except (TypeError, IndexError):
            pass


def z_e4(z):
    """A z-score as an int in 1/10000, clipped so it fits the record."""
    if z != z:
        return 0
    if z > 200000:
        return _Z_LIMIT_E4
    if z < -200000:
        return -_Z_LIMIT_E4
    return int(z * 10000)
