"""Anomaly detector: z-score of each sample against an exponentially weighted mean and variance.

Incremental form (one pass, constant memory, no sample history on a small board)::

    diff = x - mean; incr = alpha * diff; mean += incr; var = (1 - alpha) * (var + diff * incr)

The state is seeded from the first valid value (mean = x, var = 0) rather than from zero, so the
first samples do not look like a huge jump from 0 °C. Each sample is scored against the state
*before* it is folded in. Probe faults (``None``) and NaN are skipped entirely.
"""

import math

from shared.compat import isnan

DEFAULT_ALPHA = 0.1
DEFAULT_Z_LIMIT = 4.0
DEFAULT_WARMUP = 10
# One DS18B20 step (1/16 °C). A perfectly steady series has zero variance; without a floor on the
# standard deviation a single quantisation step would score as an infinite z.
DEFAULT_MIN_STD_C = 0.0625


def _is_number(x):
    return (type(x) is int or type(x) is float) and not isnan(x)


class EwmaDetector:
    """Scores samples of one sensor against its exponentially weighted mean and variance.

    ``alpha`` (0 < alpha <= 1): weight of the newest sample. ``z_limit``: ``|z|`` above it is an
    anomaly. ``warmup``: how many valid samples must have been folded in before an anomaly can be
    reported. ``min_std_c`` (°C): floor for the standard deviation used in z.
    ``update_on_anomaly``: whether an anomalous sample still updates mean and variance. The default
    (True) lets the detector follow a real change of level (a door left open, a new set point)
    within a few samples; with False one lasting step would be flagged for ever, because the mean
    never moves towards it.
    """

    def __init__(
        self,
        alpha=DEFAULT_ALPHA,
        z_limit=DEFAULT_Z_LIMIT,
        warmup=DEFAULT_WARMUP,
        min_std_c=DEFAULT_MIN_STD_C,
        update_on_anomaly=True,
    ):
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        if not z_limit > 0:
            raise ValueError("z_limit must be > 0")
        if warmup < 0 or not min_std_c >= 0:
            raise ValueError("warmup and min_std_c must be >= 0")
        self.alpha = alpha
        self.keep = 1 - alpha
        self.z_limit = z_limit
        self.warmup = warmup
        self.min_std_c = min_std_c
        self.update_on_anomaly = update_on_anomaly
        self.count = 0  # valid samples folded in so far
        self.mean = 0.0
        self.var = 0.0

    def reset(self):
        """Forget the series: the next valid value seeds the state again."""
        self.count = 0
        self.mean = 0.0
        self.var = 0.0

    def update(self, value):
        """Feed one value (°C, or None for a probe fault); returns ``(z, is_anomaly)``.

        ``z`` is None for skipped values and for the seeding value (there is nothing to compare
        it with yet).
        """
        if value is None or isnan(value):
            return None, False
        if self.count == 0:
            self.mean = value + 0.0
            self.var = 0.0
            self.count = 1
            return None, False
        diff = value - self.mean
        std = math.sqrt(self.var)
        if std < self.min_std_c:
            std = self.min_std_c
        # min_std_c == 0 with a perfectly steady history leaves nothing to scale by.
        if std > 0:
            z = diff / std
        elif diff == 0:
            z = 0.0
        else:
            z = math.inf if diff > 0 else -math.inf
        anomaly = self.count >= self.warmup and abs(z) > self.z_limit
        if anomaly and not self.update_on_anomaly:
            return z, True
        incr = self.alpha * diff
        self.mean += incr
        self.var = self.keep * (self.var + diff * incr)
        self.count += 1
        return z, anomaly

    def get_state(self):
        """``[count, mean, var]``: plain numbers that JSON can carry."""
        return [self.count, self.mean, self.var]

    def set_state(self, saved):
        """Restore a :meth:`get_state` result. A corrupt one resets the detector instead of
        raising; returns whether it was used."""
        try:
            count, mean, var = saved[0], saved[1], saved[2]
            ok = (
                len(saved) == 3
                and type(count) is int
                and count >= 0
                and _is_number(mean)
                and _is_number(var)
                and var >= 0
                and abs(mean) != math.inf
                and var != math.inf
            )
        except (TypeError, IndexError, KeyError):
            ok = False
        if not ok:
            self.reset()
            return False
        self.count = count
        self.mean = mean + 0.0
        self.var = var + 0.0
        return True
