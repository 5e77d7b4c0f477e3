"""Device presence from MQTT: each device publishes its status retained on
``tw/v1/<device>/status`` and leaves a last will saying ``offline``; this records the latest
state per device in ``device_presence`` for the offline rule, and what the device reported about
itself (spool depth, readings dropped by its spool policy, clock sync) for its health page.

Every instance subscribes (not shared): the status is retained and tiny, and the upsert keeps
only changes, so several instances writing the same state are harmless.
"""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from psycopg.types.json import Jsonb

from collector.config import Settings
from collector.db.connection import connect
from collector.tls import mqtt_client_tls
from shared import protocol as p

log = logging.getLogger(__name__)

# A status carries only what its sender knows at that moment: the edge agent's periodic status
# has the spool and drop counts, but its shutdown status and its last will name only the boot
# going offline, and a board's last will names nothing. So each field keeps the last value any
# status gave it (merged, not replaced), through offline and online transitions and reboots;
# ``reported_at`` moves when a status changed something in the report.
_UPSERT = """
INSERT INTO device_presence AS dp (device_id, state, changed_at, report, reported_at)
-- Only provisioned devices: a status for an unknown id must not create a row anyone sees.
SELECT %(d)s, %(s)s, now(), %(r)s, CASE WHEN %(r)s::jsonb IS NULL THEN NULL ELSE now() END
WHERE EXISTS (SELECT 1 FROM devices WHERE device_id = %(d)s)
ON CONFLICT (device_id) DO UPDATE SET
    state = excluded.state,
    changed_at = CASE WHEN dp.state IS DISTINCT FROM excluded.state THEN now()
                      ELSE dp.changed_at END,
    report = CASE WHEN excluded.report IS NULL THEN dp.report
                  ELSE coalesce(dp.report, '{}'::jsonb) || excluded.report END,
    reported_at = CASE WHEN excluded.report IS NULL OR dp.report @> excluded.report
                       THEN dp.reported_at ELSE now() END
WHERE dp.state IS DISTINCT FROM excluded.state
   OR (excluded.report IS NOT NULL AND NOT coalesce(dp.report @> excluded.report, false))
"""
# What a status may report about the device; anything else in it is ignored.
_REPORT_FIELDS = {"dropped": int, "spool": int, "clock_synced": bool, "boot": str, "fw": str}


def _json(payload: bytes | str) -> object:
    """The parsed payload, or None for anything that is not JSON we can read.

    RecursionError (deep nesting) and the integer-digit limit must not escape: an exception here
    would end the MQTT client's network thread, and with it every device's presence."""
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def parse_report(payload: bytes) -> dict[str, object] | None:
    """The known fields of a status payload with the right types, or None when it has none."""
    obj = _json(payload)
    if not isinstance(obj, dict):
        return None
    report = {
        key: obj[key]
        for key, kind in _REPORT_FIELDS.items()
        if type(obj.get(key)) is kind
        and (kind is not str or p.valid_id(obj[key]))
        # Counters a device reports are shown to people: bounded like any decoded number.
        and (kind is not int or 0 <= obj[key] < 2**53)
    }
    return report or None


def parse_status(payload: bytes) -> str | None:
    """``online``/``offline`` from a status payload (JSON, or the bare word), else None."""
    text = payload.decode("utf-8", "replace").strip()
    if text in ("online", "offline"):
        return text
    obj = _json(text)
    state = obj.get("state") if isinstance(obj, dict) else None
    return state if state in ("online", "offline") else None


class PresenceListener:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.database_url
        self.settings = settings
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{settings.mqtt_client_id}-presence",
            protocol=mqtt.MQTTv5,
        )
        if settings.mqtt_username:
            client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        mqtt_client_tls(client, settings.mqtt_tls_ca_file)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client = client

    def start(self) -> None:
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(p.TOPIC_PREFIX + "/+/" + p.T_STATUS, qos=1)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            self._record(msg)
        except Exception:  # never end paho's network thread over one device's message
            log.exception("a status message on %s could not be read", msg.topic)

    def _record(self, msg: mqtt.MQTTMessage) -> None:
        parsed = p.parse_topic(msg.topic)
        state = parse_status(bytes(msg.payload))
        if parsed is None or state is None or not p.valid_id(parsed[0]):
            return
        try:
            with connect(self._url, autocommit=True) as conn:
                report = parse_report(bytes(msg.payload))
                conn.execute(
                    _UPSERT,
                    {"d": parsed[0], "s": state, "r": Jsonb(report) if report else None},
                )
        except Exception:  # the next status message (or the sweep's last-seen check) still works
            log.exception("recording the presence of %s failed", parsed[0])
