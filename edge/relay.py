"""Gateway relay: batches from MicroPython boards on the local network, forwarded upstream.

Boards publish protocol v1 batches to a broker on the gateway's network. The relay decodes them,
the agent commits the readings to its spool and only then acknowledges the board (the same
ack-after-commit guarantee the collector gives), and from there they travel upstream like the
gateway's own readings. Upstream, the gateway's identity is the one the collector authenticates,
so a board's readings are sent under sensor ids ``<board>:<sensor>``: the data stays attributed
to the credential that carried it, and the board id is not lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import RelayConfig
from edge.spool import EventRow
from edge.validate import Reading
from shared import protocol
from shared.decode import BatchError, decode_batch

log = logging.getLogger(__name__)

RelayItem = tuple[list[Reading], list[EventRow], Callable[[int], None]]


def relayed_id(board_id: str, sensor_id: str) -> str | None:
    """The upstream sensor id of a board's sensor, or ``None`` if it would be too long."""
    text = board_id + ":" + sensor_id
    return text if protocol.valid_id(text) else None


class Relay:
    """Subscribes to boards' readings and events on the local broker."""

    def __init__(
        self, config: RelayConfig, gateway_id: str, deliver: Callable[[RelayItem], None]
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.deliver = deliver
        self.rejected = 0
        self.batches = 0
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="tw-relay-" + gateway_id,
            clean_session=False,
        )
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 30)
        self._lock = threading.Lock()

    def start(self) -> None:
        self.client.connect_async(self.config.host, self.config.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("relay: local broker refused the connection: %s", reason_code)
            return
        client.subscribe(
            [
                (protocol.TOPIC_PREFIX + "/+/" + protocol.T_READINGS, 1),
                (protocol.TOPIC_PREFIX + "/+/" + protocol.T_EVENTS, 1),
            ]
        )
        log.info("relay: listening for boards on %s:%s", self.config.host, self.config.port)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = protocol.parse_topic(msg.topic)
        if parsed is None or parsed[0] == self.gateway_id:
            return  # our own upstream traffic, if both brokers are the same
        board = parsed[0]
        try:
            batch = decode_batch(bytes(msg.payload))
        except BatchError as exc:
            with self._lock:
                self.rejected += 1
            log.warning("relay: batch from %s rejected: %s", board, exc.reason)
            return
        if batch.device_id != board:
            log.warning("relay: batch on %s's topic claims device %s", board, batch.device_id)
            return
        rejected = len(batch.errors)
        readings: list[Reading] = []
        for r in batch.readings:
            sid = relayed_id(board, r.sensor_id)
            if sid is None:
                rejected += 1
                continue
            readings.append(Reading(sid, r.time_ms, r.value, r.quality, r.fault))
        events: list[EventRow] = []
        for e in batch.events:
            sid = relayed_id(board, e.sensor_id)
            if sid is None:
                rejected += 1
                continue
            events.append(EventRow(sid, e.time_ms, e.kind, e.value, e.detail))
        seq, boot = batch.seq, batch.boot_id

        def acknowledge(stored: int) -> None:
            client.publish(
                protocol.topic(board, protocol.T_ACK),
                protocol.encode_ack(seq, boot, stored, 0, rejected),
                qos=1,
            )

        with self._lock:
            self.batches += 1
            self.rejected += rejected
        self.deliver((readings, events, acknowledge))
