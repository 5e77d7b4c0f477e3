"""Which devices may send: a small read-through cache over the ``devices`` table.

Collectors are stateless; this is only a cache, so several instances agree through the database.
"""

from __future__ import annotations

import threading
import time

from collector.db.connection import connect

_KNOWN_TTL_S = 60.0
_UNKNOWN_TTL_S = 2.0


class DeviceRegistry:
    def __init__(self, database_url: str, *, auto_register: bool = False) -> None:
        self._url = database_url
        self._auto_register = auto_register
        self._cache: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def allowed(self, device_id: str) -> bool:
        """True when the device is registered (or may register itself in development)."""
        if self._auto_register:
            return True
        now = time.monotonic()
        hit = self._cache.get(device_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        with self._lock, connect(self._url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT 1 FROM devices WHERE device_id = %s", (device_id,)
            ).fetchone()
        known = row is not None
        self._cache[device_id] = (known, now + (_KNOWN_TTL_S if known else _UNKNOWN_TTL_S))
        return known

    def forget(self, device_id: str) -> None:
        """Drop a cached answer (after a device is created or decommissioned here)."""
        self._cache.pop(device_id, None)
