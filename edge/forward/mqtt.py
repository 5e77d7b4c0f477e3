"""MQTT transport (paho-mqtt 2.x): QoS 1, a stable client id, a retained status with last will.

The client id is derived from the device id and the session is persistent (``clean_session``
off), so acks the collector publishes while the gateway is offline wait at the broker. The
network loop is driven here rather than by paho's ``loop_start`` so that reconnects use
exponential backoff *with jitter* (paho's own delay has none).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import EdgeSettings
from edge.forward.base import AckHandler, Backoff, ConfigHandler, Forwarder
from shared import protocol
from shared.decode import BatchError, decode_ack

log = logging.getLogger(__name__)


def client_id_for(device_id: str) -> str:
    """Stable across restarts: a random id would orphan the broker-side session. The device id
    itself, because the broker binds each device's account to it (docs/security.md)."""
    return device_id


def tls_context(settings: EdgeSettings) -> ssl.SSLContext:
    """Verify the broker's certificate and name against the provisioned CA: the installation's
    own CA, so that no certificate from a public CA can stand in for the broker."""
    ca_file = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
    ctx = ssl.create_default_context(cafile=ca_file, cadata=settings.mqtt_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class MqttForwarder(Forwarder):
    """Publishes batches to ``tw/v1/<device>/readings|events`` and listens for acks/config."""

    def __init__(
        self,
        settings: EdgeSettings,
        boot_id: str,
        on_ack: AckHandler,
        on_config: ConfigHandler | None = None,
    ) -> None:
        super().__init__(on_ack, on_config)
        self.settings = settings
        self.device_id = settings.device_id
        self.boot_id = boot_id
        self.backoff = Backoff(settings.backoff_min_s, settings.backoff_max_s)
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: bytes = protocol.encode_status("online", boot_id)
        self.connects = 0
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id_for(self.device_id),
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        if settings.mqtt_username:
            client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        if settings.mqtt_tls:
            client.tls_set_context(tls_context(settings))
        client.will_set(
            protocol.topic(self.device_id, protocol.T_STATUS),
            protocol.encode_status("offline", boot_id),
            qos=1,
            retain=True,
        )
        client.max_inflight_messages_set(max(20, settings.max_inflight_batches * 2))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-forwarder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._connected.is_set():
            info = self.client.publish(
                protocol.topic(self.device_id, protocol.T_STATUS),
                protocol.encode_status("offline", self.boot_id),
                qos=1,
                retain=True,
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.client.disconnect()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _run(self) -> None:
        socket_open = False
        first = True
        s = self.settings
        while not self._stop.is_set():
            if not socket_open:
                try:
                    if first:
                        self.client.connect(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive_s)
                    else:
                        self.client.reconnect()
                    first = False
                    socket_open = True
                except (OSError, ValueError) as exc:
                    delay = self.backoff.next_delay()
                    log.warning(
                        "MQTT connect to %s:%s failed (%s); retrying in %.1f s",
                        s.mqtt_host,
                        s.mqtt_port,
                        exc,
                        delay,
                    )
                    self._stop.wait(delay)
                    continue
            rc = self.client.loop(timeout=0.2)
            if rc != mqtt.MQTT_ERR_SUCCESS and not self._stop.is_set():
                socket_open = False
                self._connected.clear()
                delay = self.backoff.next_delay()
                log.warning("MQTT connection lost (%s); reconnecting in %.1f s", rc, delay)
                self._stop.wait(delay)

    # -- paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection refused: %s", reason_code)
            return
        self.connects += 1
        self.backoff.reset()
        client.subscribe(
            [
                (protocol.topic(self.device_id, protocol.T_ACK), 1),
                (protocol.topic(self.device_id, protocol.T_CONFIG), 1),
            ]
        )
        client.publish(
            protocol.topic(self.device_id, protocol.T_STATUS), self._status, qos=1, retain=True
        )
        self._connected.set()
        log.info(
            "MQTT connected to %s:%s as %s (session present: %s)",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            client_id_for(self.device_id),
            flags.session_present,
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = protocol.parse_topic(msg.topic)
        if parsed is None:
            return
        kind = parsed[1]
        if kind == protocol.T_ACK:
            try:
                ack = decode_ack(bytes(msg.payload))
            except (BatchError, ValueError) as exc:
                log.warning("ignoring a malformed ack: %s", exc)
                return
            self.on_ack(ack)
        elif kind == protocol.T_CONFIG and self.on_config is not None:
            self.on_config(bytes(msg.payload))

    # -- sending --------------------------------------------------------------------------------

    def send(self, kind: str, payload: bytes) -> bool:
        if not self._connected.is_set():
            return False
        info = self.client.publish(protocol.topic(self.device_id, kind), payload, qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_status(self, payload: bytes) -> None:
        self._status = payload
        if self._connected.is_set():
            self.client.publish(
                protocol.topic(self.device_id, protocol.T_STATUS), payload, qos=1, retain=True
            )
