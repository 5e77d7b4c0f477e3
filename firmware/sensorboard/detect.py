"""The shared detectors (``shared.detectors``, the same code the edge agent runs) per sensor.

Settings come from ``detectors`` in the config (for all sensors) and may be overridden by a
sensor's own ``threshold``/``ewma`` object; a setting the detector refuses is a config error,
not a crash.
"""

from shared import protocol

KIND_CODE = {}
for _i in range(len(protocol.EVENT_KINDS)):
    KIND_CODE[protocol.EVENT_KINDS[_i]] = _i + 1
ANOMALY_CODE = KIND_CODE[protocol.EV_ANOMALY]
_Z_LIMIT_E4 = 2000000000


class SensorDetectors:
    """A threshold and/or EWMA detector for one sensor (either may be absent)."""

    def __init__(self, threshold=None, ewma=None):
        self.threshold = threshold
        self.ewma = ewma


def z_e4(z):
    """A z-score as an int in 1/10000, clipped so it fits the record."""
    if z != z:
        return 0
    if z > 200000:
        return _Z_LIMIT_E4
    if z < -200000:
        return -_Z_LIMIT_E4
    return int(z * 10000)
