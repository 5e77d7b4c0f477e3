"""Wall-clock time for readings: SNTP sync, an "unsynced" flag until it succeeds, and a clock
kept in two small ints (seconds, milliseconds) advanced from ``ticks_ms`` so reading it allocates
nothing and survives the 2000-01-01 epoch of some ports.
"""

import socket
import struct
import time

from shared.compat import const

_NTP_TO_UNIX = const(2208988800)
_EPOCH_2000 = const(946684800)
# Below this the RTC was never set (a board booting in 2000 or 1970): its time is a guess.
_PLAUSIBLE_UNIX_S = const(1700000000)


def rtc_unix_seconds():
    """The RTC's idea of now as Unix seconds, whatever epoch the port uses."""
    now = int(time.time())
    if time.gmtime(0)[0] == 2000:
        now += _EPOCH_2000
    return now


def sntp_query(host, port=123, timeout_s=2.0):
    """``(seconds, milliseconds)`` since 1970 from an SNTP server, or ``None``."""
    packet = bytearray(48)
    packet[0] = 0x1B  # LI 0, version 3, mode 3 (client)
    sock = None
    try:
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(timeout_s)
        sock.sendto(packet, addr)
        reply = sock.recv(48)
    except (OSError, IndexError):
        return None
    finally:
        if sock is not None:
            sock.close()
    if len(reply) < 48 or reply[0] & 0x07 != 4:  # mode 4: server
        return None
    seconds, fraction = struct.unpack_from("!II", reply, 40)
    if seconds == 0:
        return None
    return seconds - _NTP_TO_UNIX, (fraction >> 16) * 1000 >> 16


class Clock:
    """UTC now as ``sec``/``ms`` attributes; ``synced`` stays false until a time source agreed."""

    def __init__(self, ntp_host="", ntp_port=123, resync_s=3600):
        self.ntp_host = ntp_host
        self.ntp_port = ntp_port
        self.resync_ms = resync_s * 1000
        self.synced = False
        self.sync_failures = 0
        self.sec = rtc_unix_seconds()
        self.ms = 0
        self._ticks = time.ticks_ms()
        self._last_sync = self._ticks
        if not ntp_host and self.sec >= _PLAUSIBLE_UNIX_S:
            # No NTP configured: the system clock is the time source (the unix port's host runs
            # its own NTP; a board RTC kept through deep sleep was synced before it slept).
            self.synced = True

    def now(self):
        """Advance ``sec``/``ms`` to now."""
        ticks = time.ticks_ms()
        elapsed = time.ticks_diff(ticks, self._ticks)
        self._ticks = ticks
        ms = self.ms + elapsed
        self.sec += ms // 1000
        self.ms = ms % 1000

    def set(self, sec, ms):
        self.sec = sec
        self.ms = ms
        self._ticks = time.ticks_ms()
        self._last_sync = self._ticks
        self.synced = True
        _set_rtc(sec)

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
        result = sntp_query(self.ntp_host, self.ntp_port, timeout_s)
        if result is None:
            self.sync_failures += 1
            self._last_sync = time.ticks_ms()
            return False
        self.set(result[0], result[1])
        return True


def _set_rtc(unix_s):
    # Boards keep the RTC through deep sleep, so the next wake starts with a good time.
    try:
        import machine

        rtc = machine.RTC()
    except (ImportError, AttributeError):
        return
    local = unix_s - _EPOCH_2000 if time.gmtime(0)[0] == 2000 else unix_s
    t = time.gmtime(local)
    try:
        rtc.datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))
    except Exception:
        pass
