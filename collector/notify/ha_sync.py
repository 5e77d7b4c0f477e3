"""Keeps every Home Assistant target's sensors discovered and their temperatures current.

Runs as a leader-only job after the alert sweep (one instance publishes); publishes only what
changed since this instance last published it, and at most every ``interval_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from collector.alerts.catalog import DEVICE_HOME_SQL
from collector.notify.base import NotifyError
from collector.notify.homeassistant import HomeAssistantConfig, sensor_messages
from collector.notify.mqtt import publish_all
from collector.notify.secrets import SecretError, box_for, open_config

log = logging.getLogger(__name__)

_SENSORS = f"""
SELECT s.device_id, s.sensor_id, s.label, d.name, s.last_value
FROM sensors s JOIN devices d ON d.device_id = s.device_id
WHERE %(home)s::bigint IS NULL OR {DEVICE_HOME_SQL} = %(home)s::bigint
ORDER BY s.device_id, s.sensor_id
"""


class HomeAssistantSync:
    def __init__(
        self,
        *,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        secret_key: str | None = None,
        allow_private_targets: bool = False,
    ) -> None:
        self.interval_s = interval_s
        self._box = box_for(secret_key) if secret_key else None
        self.allow_private_targets = allow_private_targets
        self._clock = clock
        self._next = 0.0
        self._published: dict[tuple[int, str], str] = {}  # (target, topic) -> payload

    def __call__(self, conn: psycopg.Connection) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self.interval_s
        targets = conn.execute(
            "SELECT id, home_id, config, private_ok FROM notify_targets "
            "WHERE enabled AND kind = 'homeassistant' ORDER BY id"
        ).fetchall()
        for target_id, home_id, config, private_ok in targets:
            try:
                opened = open_config(self._box, "homeassistant", config or {})
                allow_private = bool(private_ok) or self.allow_private_targets
                self.sync_target(conn, target_id, home_id, opened, allow_private=allow_private)
            except (NotifyError, SecretError, ValueError) as exc:
                log.warning("Home Assistant sync of target %s failed: %s", target_id, exc)

    def sync_target(
        self,
        conn: psycopg.Connection,
        target_id: int,
        home_id: int | None,
        config: dict,
        *,
        allow_private: bool = False,
    ) -> int:
        """Publish what changed for one target (``config`` with its secrets open)."""
        cfg = HomeAssistantConfig.model_validate(config)
        messages: list[dict[str, Any]] = []
        for device_id, sensor_id, label, device_name, value in conn.execute(
            _SENSORS, {"home": home_id}
        ).fetchall():
            for msg in sensor_messages(
                cfg, device_id, sensor_id, device_name=device_name, label=label, value=value
            ):
                if self._published.get((target_id, msg["topic"])) != msg["payload"]:
                    messages.append(msg)
        publish_all(cfg, messages, allow_private=allow_private)
        for msg in messages:
            self._published[(target_id, msg["topic"])] = msg["payload"]
        return len(messages)
