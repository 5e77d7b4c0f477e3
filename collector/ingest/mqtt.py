"""MQTT transport: a persistent-session MQTT v5 client on a shared subscription.

The broker's PUBACK is withheld (``manual_ack``) until the batch is committed, so a collector
that dies before committing leaves the message with the broker, which re-delivers it to this
client id on reconnect; the idempotent insert makes the re-delivery harmless. The device gets its
application-level ack on ``tw/v1/<device>/ack`` at the same moment.
"""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.config import Settings
from collector.ingest.pipeline import IngestPipeline
from collector.ingest.work import Outcome
from shared import protocol as p

log = logging.getLogger(__name__)


class MqttIngest:
    def __init__(self, settings: Settings, pipeline: IngestPipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.connected = threading.Event()
        # Message ids are per connection: an ack for a message from an earlier connection must
        # not be sent on the new one (it would acknowledge some other message).
        self._generation = 0
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if settings.mqtt_username:
            client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_queued_messages_set(0)
        self.client = client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        self.client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=self.settings.mqtt_keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # -- callbacks (paho's network thread) -------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection refused: %s", reason_code)
            return
        self._generation += 1
        group = self.settings.mqtt_shared_group
        client.subscribe(
            [
                (p.shared_subscription(p.T_READINGS, group), 1),
                (p.shared_subscription(p.T_EVENTS, group), 1),
            ]
        )
        self.connected.set()
        log.info(
            "MQTT connected to %s:%s (session present: %s)",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            flags.session_present,
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("MQTT disconnected: %s", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        parsed = p.parse_topic(msg.topic)
        device_id = parsed[0] if parsed else None
        generation, mid, qos = self._generation, msg.mid, msg.qos

        def done(outcome: Outcome) -> None:
            if outcome.ackable and device_id is not None:
                client.publish(
                    p.topic(device_id, p.T_ACK),
                    p.encode_ack(
                        outcome.seq,
                        outcome.boot_id,
                        outcome.stored,
                        outcome.duplicates,
                        outcome.rejected,
                    ),
                    qos=1,
                )
            if qos > 0 and generation == self._generation:
                client.ack(mid, qos)

        # The broker authenticated the publisher and its ACL allows it only its own topics, so
        # the device id in the topic is the authenticated identity.
        try:
            self.pipeline.submit(
                bytes(msg.payload), identity=device_id, transport="mqtt", on_done=done
            )
        except Exception:
            # Never let one message kill paho's network thread. Unacknowledged, the message is
            # delivered again when the session reconnects.
            log.exception("could not take a message on %s", msg.topic)
