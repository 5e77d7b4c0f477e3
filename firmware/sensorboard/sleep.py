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


_RTC_MAGIC = b"TW1"


def save_state(board):
    """Detector states and the clock's sync flag into RTC memory."""
    import json

    saved = []
    for d in board.detectors:
        saved.append(
            None
            if d is None
            else [d[0].get_state() if d[0] else None, d[1].get_state() if d[1] else None]
        )
    state = [saved, board.clock.synced]
    RtcMemory(board.root).write(_RTC_MAGIC + json.dumps(state).encode())


def load_state(board):
    """Restore what :func:`save_state` kept; anything damaged is ignored (a fresh start)."""
    import json

    raw = RtcMemory(board.root).read()
    if not raw or raw[:3] != _RTC_MAGIC:
        return False
    try:
        saved, synced = json.loads(raw[3:])
        for i in range(min(len(saved), len(board.detectors))):
            d = board.detectors[i]
            if d is None or saved[i] is None:
                continue
            for k in (0, 1):
                if d[k] is not None and saved[i][k] is not None:
                    d[k].set_state(saved[i][k])
    except (ValueError, TypeError, IndexError):
        return False
    if synced and not board.clock.ntp_host:
        board.clock.synced = True
    return True


def run_once_and_sleep(board, deliver_for_ms=30000):
    """Deep-sleep mode: restore state, one sample, flush, deliver what the link takes, save the
    state, sleep. The spool on flash carries anything undelivered to the next wake."""
    import time

    load_state(board)
    if board.clock.sync_due():
        board.clock.sync()
    board._start_conversions(time.ticks_ms())
    while time.ticks_diff(time.ticks_ms(), board.read_at) < 0:
        board.feed()
        time.sleep_ms(10)
    board._read_all()
    board.flush()
    start = time.ticks_ms()
    while not board.offline and time.ticks_diff(time.ticks_ms(), start) < deliver_for_ms:
        board.deliver(time.ticks_ms())
        if not board.inflight and not board.spool.pending():
            break
        time.sleep_ms(10)
    if not board.offline:
        board.transport.close()
    save_state(board)
    deep_sleep(board.deep_sleep_s * 1000)
