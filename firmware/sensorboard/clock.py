"""Wall-clock time for readings: an "unsynced" flag until a time source agreed (SNTP, in
:mod:`sensorboard.sntp`), and a clock kept in two small ints (seconds, milliseconds) advanced from
``ticks_ms`` so reading it allocates nothing and survives the 2000-01-01 epoch of some ports.
"""

import time

from shared.compat import const

_EPOCH_2000 = const(946684800)
# The clock counts seconds since 2020-01-01 UTC: a small int on 32-bit boards until 2054, so
# advancing it never allocates (Unix seconds outgrew 30 bits in 2004).
EPOCH_2020 = const(1577836800)
# Below this the RTC was never set (a board booting in 2000 or 1970): its time is a guess.
_PLAUSIBLE_UNIX_S = const(1700000000)


class Clock:
    """UTC now as ``sec`` (since 2020) and ``ms``; ``synced`` stays false until a time source
    agreed."""

    def __init__(self, ntp_host="", ntp_port=123, resync_s=3600):
        self.ntp_host = ntp_host
        self.ntp_port = ntp_port
        self.resync_ms = resync_s * 1000
        self.synced = False
        self.sync_failures = 0
        self.sec = int(time.time()) - EPOCH_2020
        if time.gmtime(0)[0] == 2000:  # the port counts from 2000-01-01
            self.sec += _EPOCH_2000
        self.ms = 0
        self._ticks = time.ticks_ms()
        self._last_sync = self._ticks
        if not ntp_host and self.sec + EPOCH_2020 >= _PLAUSIBLE_UNIX_S:
            # No NTP configured: the system clock is the time source (the unix port's host runs
            # its own NTP; a board RTC kept through deep sleep was synced before it slept).
            self.synced = True

    def now(self):
        """Advance ``sec`` (since 2020-01-01 UTC) and ``ms`` to now."""
        ticks = time.ticks_ms()
        elapsed = time.ticks_diff(ticks, self._ticks)
        self._ticks = ticks
        ms = self.ms + elapsed
        self.sec += ms // 1000
        self.ms = ms % 1000

    def sync_due(self):
        if not self.ntp_host:
            return False
        if not self.synced:
            return True
        return time.ticks_diff(time.ticks_ms(), self._last_sync) >= self.resync_ms

    def sync(self, timeout_s=2.0):
        """Ask the NTP server; True on success. A failure keeps the current time and flag."""
        if not self.ntp_host:
            return self.synced
        from sensorboard import sntp

        result = sntp.query(self.ntp_host, self.ntp_port, timeout_s)
        if result is None:
            self.sync_failures += 1
            self._last_sync = time.ticks_ms()
            return False
        self.sec = result[0] - EPOCH_2020
        self.ms = result[1]
        self._ticks = time.ticks_ms()
        self._last_sync = self._ticks
        self.synced = True
        sntp.set_rtc(result[0])
        return True
