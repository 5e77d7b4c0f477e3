"""Deep sleep and the RTC memory that survives it (imported only by boards in deep-sleep mode).

On the unix port RTC memory is a file in the board's filesystem root (it plays the RTC RAM) and
"deep sleep" ends the process: whoever runs it plays the wake-up timer.
"""

import sys


class RtcMemory:
    """Bytes that survive deep sleep: ``machine.RTC().memory()`` on ESP32, a file elsewhere."""

    def __init__(self, root):
        self.path = (root + "/" if root else "") + ".rtc_memory"
        self.rtc = None
        try:
            from machine import RTC

            rtc = RTC()
            if hasattr(rtc, "memory"):
                self.rtc = rtc
        except (ImportError, AttributeError):
            pass

    def read(self):
        if self.rtc is not None:
            return self.rtc.memory()
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def write(self, data):
        if self.rtc is not None:
            self.rtc.memory(data)
            return
        with open(self.path, "wb") as f:
            f.write(data)


def deep_sleep(ms):
    """Sleep until the timer wakes the board (which then boots again). Without ``deepsleep``
    (the unix port) the process exits and whoever runs it plays the timer."""
    try:
        from machine import deepsleep

        deepsleep(ms)
    except (ImportError, AttributeError):
        print("TW deepsleep", ms)
        sys.exit(0)
