"""systemd's readiness and watchdog protocol (``sd_notify``).

Written here because the protocol is one datagram to the socket named in ``$NOTIFY_SOCKET``, and
the alternatives are a C binding (python-systemd, needs libsystemd headers to build) or a
package unmaintained since 2017. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends ``READY=1``, ``WATCHDOG=1``, ``STATUS=...`` and ``STOPPING=1`` to systemd."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace socket
        self.address = address
        # WatchdogSec= arrives as WATCHDOG_USEC; ping at half of it, as sd_watchdog_enabled advises.
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 2_000_000 if enabled else None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
            return True
        except OSError:
            return False  # systemd went away or the socket is wrong: the agent keeps running

    def ready(self, status: str = "") -> None:
        self.notify("READY=1\nSTATUS=" + status if status else "READY=1")

    def status(self, text: str) -> None:
        self.notify("STATUS=" + text)

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self, now: float | None = None) -> None:
        """Ping the watchdog if it is due; call it from the main loop, never from a timer
        thread, so a hung main loop stops the pings and systemd restarts the agent."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self.notify("WATCHDOG=1")
