"""Which devices may send: a small read-through cache over the ``devices`` table.

Collectors are stateless; this is only a cache, so several instances agree through the database.
"""

from __future__ import annotations

import threading
import time

from collector.auth import hashing
from collector.db.connection import connect

_KNOWN_TTL_S = 60.0
_UNKNOWN_TTL_S = 2.0
_TOKEN_TTL_S = 5.0


class DeviceRegistry:
    def __init__(self, database_url: str, *, auto_register: bool = False) -> None:
        self._url = database_url
        self._auto_register = auto_register
        self._cache: dict[str, tuple[bool, float]] = {}
        self._tokens: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def allowed(self, device_id: str) -> bool:
        """True when the device is registered and active (or may register itself in
        development); a decommissioned device is refused either way."""
        now = time.monotonic()
        hit = self._cache.get(device_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        with self._lock, connect(self._url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT status FROM devices WHERE device_id = %s", (device_id,)
            ).fetchone()
        known = self._auto_register if row is None else row[0] == "active"
        ttl = _KNOWN_TTL_S if row is not None and known else _UNKNOWN_TTL_S
        self._cache[device_id] = (known, now + ttl)
        return known

    def device_for_token(self, token: str) -> str | None:
        """The active device an ingest token belongs to (CoAP and HTTP credentials)."""
        token_hash = hashing.digest(token)
        now = time.monotonic()
        hit = self._tokens.get(token_hash)
        if hit is not None and hit[1] > now:
            return hit[0]
        with self._lock, connect(self._url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT device_id FROM devices WHERE token_hash = %s AND status = 'active'",
                (token_hash,),
            ).fetchone()
        device_id = str(row[0]) if row else None
        # Short: a rotated or revoked token must stop working within seconds on every instance.
        self._tokens[token_hash] = (device_id, now + _TOKEN_TTL_S)
        return device_id

    def forget(self, device_id: str) -> None:
        """Drop a cached answer (after a device is created or decommissioned here)."""
        self._cache.pop(device_id, None)
        self._tokens.clear()
