"""Which devices may send, and whose ingest token is whose: a read-through cache over the
``devices`` table.

Collectors are stateless; this is only a cache, so several instances agree through the database.
It is warmed with every device in one query at start-up and looks up misses on a small pool of
persistent connections: a lookup runs on the MQTT intake thread, so it must never pay for a new
connection.
"""

from __future__ import annotations

import logging
import time

from psycopg_pool import ConnectionPool

from collector.auth import hashing
from collector.db.connection import psycopg_url

log = logging.getLogger(__name__)

_KNOWN_TTL_S = 60.0
_UNKNOWN_TTL_S = 2.0
# Short: a rotated or revoked token must stop working within seconds on every instance.
_TOKEN_TTL_S = 5.0


class DeviceRegistry:
    def __init__(self, database_url: str, *, auto_register: bool = False) -> None:
        self._auto_register = auto_register
        self._cache: dict[str, tuple[bool, float]] = {}
        self._tokens: dict[str, tuple[str | None, float]] = {}
        self._pool = ConnectionPool(
            psycopg_url(database_url),
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            open=False,
            name="device-registry",
            # The pool's reconnect backoff doubles without a cap (1, 2, 4 ... 64 s): after a
            # minute's outage ingest would wait up to another minute once the database is back.
            # Callers retry on their own (the MQTT intake waits out an outage), so the pool gives
            # up soon and the next lookup starts a fresh attempt at once.
            reconnect_timeout=10.0,
        )

    def open(self) -> None:
        """Open the pool and load every device's status in one query."""
        self._pool.open()
        try:
            with self._pool.connection(timeout=10) as conn:
                rows = conn.execute("SELECT device_id, status FROM devices").fetchall()
        except Exception as exc:  # the cache fills on demand instead
            log.warning("could not warm the device cache: %s", exc)
            return
        expires = time.monotonic() + _KNOWN_TTL_S
        for device_id, status in rows:
            self._cache[device_id] = (status == "active", expires)

    def close(self) -> None:
        self._pool.close()

    def allowed(self, device_id: str) -> bool:
        """True when the device is registered and active (or may register itself in
        development); a decommissioned device is refused either way."""
        now = time.monotonic()
        hit = self._cache.get(device_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        with self._pool.connection(timeout=5) as conn:
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
        with self._pool.connection(timeout=5) as conn:
            row = conn.execute(
                "SELECT device_id FROM devices WHERE token_hash = %s AND status = 'active'",
                (token_hash,),
            ).fetchone()
        device_id = str(row[0]) if row else None
        self._tokens[token_hash] = (device_id, now + _TOKEN_TTL_S)
        return device_id

    def forget(self, device_id: str) -> None:
        """Drop a cached answer (after a device is created or decommissioned here)."""
        self._cache.pop(device_id, None)
        self._tokens.clear()
