"""A real MQTT client for tests: publish batches with QoS 1 and collect acknowledgements."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.net import wait_for


class TestClient:
    """A connected paho client that records every message on its subscriptions."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        port: int,
        *,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self.client.on_message = self._on_message
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.messages.append(msg)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos)
        done.wait(5)

    def publish_all(self, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> None:
        """Publish and wait until the broker acknowledged every message."""
        infos = [self.client.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)

    def received(self, topic: str | None = None) -> list[bytes]:
        with self._lock:
            return [bytes(m.payload) for m in self.messages if topic in (None, m.topic)]

    def wait_received(self, count: int, topic: str | None = None, timeout_s: float = 30) -> None:
        wait_for(
            lambda: len(self.received(topic)) >= count,
            timeout_s,
            what=f"{count} messages on {topic}",
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
