"""SNTP (RFC 4330) client and RTC setting; imported only when an NTP server is configured."""

import socket
import struct
import time

from shared.compat import const

_NTP_TO_UNIX = const(2208988800)
_EPOCH_2000 = const(946684800)


def query(host, port=123, timeout_s=2.0):
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


def set_rtc(unix_s):
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
