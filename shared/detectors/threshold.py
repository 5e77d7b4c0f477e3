"""Threshold detector for one sensor: high and/or low limit with hysteresis and a minimum duration.

A limit fires only after the value has stayed past it for ``min_duration_s``; it clears only after
the value has come back past the limit by ``hysteresis_c`` for ``clear_duration_s``. Both keep a
value that wobbles around a limit from flapping. Probe faults (``None``) and NaN are skipped: they
neither reset nor advance the state, so a fault burst does not clear an alert or restart a count.
"""

from shared.compat import const, isnan
from shared.protocol import EV_THRESHOLD_CLEAR, EV_THRESHOLD_HIGH, EV_THRESHOLD_LOW

# Where the detector stands (first element of the saved state).
STATE_NORMAL = const(0)
STATE_HIGH = const(1)  # the high limit fired and has not cleared
STATE_LOW = const(2)  # the low limit fired and has not cleared

# Which condition is being timed (second element of the saved state).
PENDING_NONE = const(0)
PENDING_HIGH = const(1)
PENDING_LOW = const(2)
PENDING_CLEAR = const(3)

DEFAULT_HYSTERESIS_C = 0.5
DEFAULT_MIN_DURATION_S = 60.0


def _is_number(x):
    # bool is an int subclass; a saved state holding true/false is corrupt, not a number.
    return (type(x) is int or type(x) is float) and not isnan(x)


class ThresholdDetector:
    """Turns ``(t_s, value)`` samples of one sensor into threshold events (see module docstring).

    ``high_c``/``low_c``: limits in °C (either may be None, not both); fires above ``high_c``
    or below ``low_c`` (strictly). ``hysteresis_c`` (°C, >= 0): how far back inside the limit the
    value must come to clear. ``min_duration_s``: how long the value must stay past a limit before
    it fires (0 = at once). ``clear_duration_s``: the same for clearing; defaults to
    ``min_duration_s``.
    """

    def __init__(
        self,
        high_c=None,
        low_c=None,
        hysteresis_c=DEFAULT_HYSTERESIS_C,
        min_duration_s=DEFAULT_MIN_DURATION_S,
        clear_duration_s=None,
    ):
        if high_c is None and low_c is None:
            raise ValueError("a threshold needs high_c or low_c")
        if high_c is not None and low_c is not None and not low_c < high_c:
            raise ValueError("low_c must be below high_c")
        if clear_duration_s is None:
            clear_duration_s = min_duration_s
        if not (hysteresis_c >= 0 and min_duration_s >= 0 and clear_duration_s >= 0):
            raise ValueError("hysteresis and durations must be >= 0")
        self.high_c = high_c
        self.low_c = low_c
        self.hysteresis_c = hysteresis_c
        self.min_duration_s = min_duration_s
        self.clear_duration_s = clear_duration_s
        # Computed once: update() compares against these without building new floats.
        self.clear_below_c = None if high_c is None else high_c - hysteresis_c
        self.clear_above_c = None if low_c is None else low_c + hysteresis_c
        self.state = STATE_NORMAL
        self.pending = PENDING_NONE
        self.pending_since_s = 0
        # The limit the last returned event refers to (the event's "detail" on the wire).
        self.last_limit_c = None

    def reset(self):
        """Forget everything: back to normal with nothing being timed."""
        self.state = STATE_NORMAL
        self.pending = PENDING_NONE
        self.pending_since_s = 0

    def condition(self, value):
        """The condition ``value`` meets in the current state (a ``PENDING_*`` constant)."""
        state = self.state
        if state == STATE_NORMAL:
            if self.high_c is not None and value > self.high_c:
                return PENDING_HIGH
            if self.low_c is not None and value < self.low_c:
                return PENDING_LOW
            return PENDING_NONE
        if state == STATE_HIGH:
            # A limit removed by a config change while it was active clears at once.
            if self.clear_below_c is None or value < self.clear_below_c:
                return PENDING_CLEAR
            return PENDING_NONE
        if self.clear_above_c is None or value > self.clear_above_c:
            return PENDING_CLEAR
        return PENDING_NONE

    def update(self, t_s, value):
        """Feed one sample (time in seconds, value in °C or None for a probe fault).

        Returns ``EV_THRESHOLD_HIGH``, ``EV_THRESHOLD_LOW``, ``EV_THRESHOLD_CLEAR`` or None.
        """
        if value is None or isnan(value):
            return None
        cond = self.condition(value)
        if cond == PENDING_NONE:
            self.pending = PENDING_NONE
            self.pending_since_s = 0
            return None
        if cond != self.pending:
            self.pending = cond
            self.pending_since_s = t_s
        needed = self.clear_duration_s if cond == PENDING_CLEAR else self.min_duration_s
        if t_s - self.pending_since_s < needed:
            return None
        self.pending = PENDING_NONE
        self.pending_since_s = 0
        if cond == PENDING_HIGH:
            self.state = STATE_HIGH
            self.last_limit_c = self.high_c
            return EV_THRESHOLD_HIGH
        if cond == PENDING_LOW:
            self.state = STATE_LOW
            self.last_limit_c = self.low_c
            return EV_THRESHOLD_LOW
        self.last_limit_c = self.high_c if self.state == STATE_HIGH else self.low_c
        self.state = STATE_NORMAL
        return EV_THRESHOLD_CLEAR

    def get_state(self):
        """``[state, pending, pending_since_s]``: plain numbers that JSON can carry."""
        return [self.state, self.pending, self.pending_since_s]

    def set_state(self, saved):
        """Restore a :meth:`get_state` result. A corrupt one resets the detector instead of
        raising (a damaged state file must not stop the board); returns whether it was used."""
        try:
            state, pending, since = saved[0], saved[1], saved[2]
            ok = (
                len(saved) == 3
                and type(state) is int
                and STATE_NORMAL <= state <= STATE_LOW
                and type(pending) is int
                and PENDING_NONE <= pending <= PENDING_CLEAR
                and _is_number(since)
            )
        except (TypeError, IndexError, KeyError):
            ok = False
        if not ok:
            self.reset()
            return False
        self.state = state
        self.pending = pending
        self.pending_since_s = since if pending != PENDING_NONE else 0
        return True
