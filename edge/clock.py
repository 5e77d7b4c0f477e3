"""Is the system clock synchronised? Readings taken while it is not carry ``Q_CLOCK_UNSYNCED``.

On Linux the kernel knows: ``adjtimex`` with no modes returns ``TIME_ERROR`` and sets
``STA_UNSYNC`` until an NTP client (chrony, systemd-timesyncd) has disciplined the clock. This is
what ``timedatectl`` reports as ``NTPSynchronized``, read without D-Bus.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import time

log = logging.getLogger(__name__)

STA_UNSYNC = 0x0040
TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (64-bit and 32-bit layouts follow from the C types).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


def kernel_clock_synced() -> bool | None:
    """``True``/``False`` from the kernel, ``None`` where it cannot be asked (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not tx.status & STA_UNSYNC


class ClockWatch:
    """Caches the sync state and re-asks the kernel at most every ``recheck_s`` seconds.

    ``override`` (from config) replaces the kernel's answer; with neither, the clock is assumed
    synchronised, because flagging every reading of a host that cannot tell would hide nothing.
    """

    def __init__(self, override: bool | None = None, recheck_s: float = 30.0) -> None:
        self.override = override
        self.recheck_s = recheck_s
        self._checked_at = -1e18
        self._synced = True

    def synced(self) -> bool:
        if self.override is not None:
            return self.override
        now = time.monotonic()
        if now - self._checked_at >= self.recheck_s:
            self._checked_at = now
            answer = kernel_clock_synced()
            synced = True if answer is None else answer
            if synced != self._synced:
                log.warning("system clock %s", "synchronised" if synced else "NOT synchronised")
            self._synced = synced
        return self._synced
