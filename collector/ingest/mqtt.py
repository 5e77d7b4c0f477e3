"""MQTT transport: a persistent-session MQTT v5 client on a shared subscription.

The broker's PUBACK is withheld (``manual_ack``) until the batch is committed, so a collector
that dies before committing leaves the message with the broker, which re-delivers it to this
client id on reconnect; the idempotent insert makes the re-delivery harmless. The device gets its
application-level ack on ``tw/v1/<device>/ack`` at the same moment.

paho has one network thread, which also answers the broker's keepalive. It never waits for the
database: ``on_message`` only puts the message on a bounded intake queue, and an intake thread
takes it through the pipeline, where waiting out a database outage or a full writer is fine. The
CONNECT advertises a Receive Maximum, so the broker has at most that many unacknowledged
messages out to us; the queue holds that many of the largest payloads. Mosquitto 2.0.11 sends
more once acknowledgements flow (each PUBACK for its oldest in-flight message releases a whole
window), so the queue is bounded by bytes: the network thread waits briefly for room while the
pipeline is moving, and otherwise acknowledges the message unhandled rather than stall.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector import metrics
from collector.config import Settings
from collector.ingest.pipeline import IngestPipeline
from collector.ingest.work import Outcome
from collector.tls import mqtt_client_tls
from shared import protocol as p

log = logging.getLogger(__name__)

# How much longer than the keepalive we may go without hearing from the broker before we stop
# calling ourselves ready: paho pings after one keepalive of silence and the broker answers at
# once; the broker itself gives up on us after 1.5 keepalives.
_SILENCE_FACTOR = 1.5
_SILENCE_MARGIN_S = 2.0
# Longest the network thread waits for room in the intake for one message (see _Intake).
_ROOM_WAIT_S = 1.0


class _Message(NamedTuple):
    payload: bytes
    topic: str
    mid: int
    qos: int
    generation: int


class _Intake:
    """The FIFO between paho's network thread and the intake thread, bounded by bytes.

    When it is full, ``put`` waits for room (TCP backpressure, which the broker handles) only
    while the intake thread is making progress, at most ``wait_s`` per message and at most half
    of every ``window_s``, so the network thread still writes our PUBACKs and PINGREQs in time
    for the keepalive. Otherwise the message does not fit and ``put`` says so at once.
    """

    def __init__(self, max_bytes: int, *, wait_s: float, window_s: float) -> None:
        self._items: collections.deque[_Message] = collections.deque()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._wait_s = wait_s
        self._window_s = window_s
        self._window_start = 0.0
        self._window_waited = 0.0
        self._busy_since: float | None = None  # when the intake thread took its message
        self._closed = False
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def put(self, message: _Message) -> bool:
        """Queue a message; False when it does not fit."""
        size = len(message.payload)
        with self._lock:
            started = time.monotonic()
            if started - self._window_start >= self._window_s:
                self._window_start, self._window_waited = started, 0.0
            budget = min(self._wait_s, self._window_s / 2 - self._window_waited)
            try:
                while self._items and self._bytes + size > self._max_bytes:
                    now = time.monotonic()
                    busy = self._busy_since
                    stuck = busy is not None and now - busy > self._wait_s
                    if self._closed or stuck or now - started >= budget:
                        return False
                    self._not_full.wait(budget - (now - started))
            finally:
                self._window_waited += time.monotonic() - started
            self._items.append(message)
            self._bytes += size
            self._not_empty.notify()
            return True

    def get(self) -> _Message | None:
        """The oldest message, waiting for one; None once closed."""
        with self._lock:
            self._busy_since = None
            while not self._items and not self._closed:
                self._not_empty.wait()
            if self._closed:
                return None
            message = self._items.popleft()
            self._bytes -= len(message.payload)
            self._busy_since = time.monotonic()
            self._not_full.notify()
            return message

    def clear(self) -> int:
        with self._lock:
            dropped = len(self._items)
            self._items.clear()
            self._bytes = 0
            self._not_full.notify_all()
            return dropped

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()


class MqttIngest:
    """Subscribes to every device's readings and events and feeds them to the pipeline."""

    def __init__(self, settings: Settings, pipeline: IngestPipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.connected = threading.Event()
        # Message ids are per connection: an ack for a message from an earlier connection must
        # not be sent on the new one (it would acknowledge some other message).
        self._generation = 0
        self._receive_maximum = settings.mqtt_receive_maximum
        self._intake = _Intake(
            self._receive_maximum * settings.max_payload_bytes,
            wait_s=_ROOM_WAIT_S,
            window_s=max(1.0, settings.mqtt_keepalive_s / 2),
        )
        self._refused_logged = 0.0
        self._intake_thread = threading.Thread(
            target=self._intake_loop, name="mqtt-intake", daemon=True
        )
        self._stopping = threading.Event()
        self._last_heard = 0.0  # monotonic time of the last packet from the broker
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if settings.mqtt_username:
            client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        mqtt_client_tls(client, settings.mqtt_tls_ca_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_log = self._on_log
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_queued_messages_set(0)
        self.client = client

    def start(self) -> None:
        self._intake_thread.start()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        self.client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=self.settings.mqtt_keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()
        self._intake.close()
        self._intake_thread.join(timeout=5.0)

    def ready(self) -> bool:
        """Connected as the broker sees it: the session is up and the broker has been heard
        from within the keepalive (so it has not given up on us)."""
        if not self.connected.is_set() or not self._intake_thread.is_alive():
            return False
        # A network thread that died or hangs hears nothing either.
        limit = self.settings.mqtt_keepalive_s * _SILENCE_FACTOR + _SILENCE_MARGIN_S
        return time.monotonic() - self._last_heard <= limit

    # -- callbacks (paho's network thread: none of them waits for the database) ----------------

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        # paho reports every packet it reads here; a PINGRESP, PUBLISH or PUBACK from the
        # broker is proof that the broker still serves this session.
        if buf.startswith("Received "):
            self._last_heard = time.monotonic()
        elif level == mqtt.MQTT_LOG_ERR:
            log.error("MQTT: %s", buf)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection refused: %s", reason_code)
            return
        self._generation += 1
        # Messages of the previous connection still queued cannot be acknowledged any more;
        # the broker sends them again on this one, so make room for them.
        dropped = self._intake.clear()
        if dropped:
            log.info("MQTT reconnected: %d queued messages will be delivered again", dropped)
        self._last_heard = time.monotonic()
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

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self.connected.clear()
        log.warning("MQTT disconnected: %s", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        message = _Message(bytes(msg.payload), msg.topic, msg.mid, msg.qos, self._generation)
        if self._intake.put(message):
            return
        # Only a broker that ignores our Receive Maximum gets here. Waiting would stop the
        # keepalive; not acknowledging would hold the broker's in-flight slot until the next
        # reconnect. A PUBACK without the device's ack loses nothing for senders that re-send
        # what was not acknowledged (docs/protocol.md).
        metrics.MQTT_INTAKE_REFUSED.inc()
        now = time.monotonic()
        if now - self._refused_logged >= 10.0:
            self._refused_logged = now
            log.warning("MQTT intake full: messages acknowledged unhandled (e.g. on %s)", msg.topic)
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)

    # -- the intake thread ---------------------------------------------------------------------

    def _intake_loop(self) -> None:
        while not self._stopping.is_set():
            message = self._intake.get()
            if message is None:
                return
            if message.generation != self._generation:
                continue  # re-delivered on the current connection
            self._handle(message)

    def _handle(self, message: _Message) -> None:
        client = self.client
        parsed = p.parse_topic(message.topic)
        # The broker authenticated the publisher and its ACL allows it only its own topics, so
        # the device id in the topic is the authenticated identity.
        device_id = parsed[0] if parsed else None
        generation, mid, qos = message.generation, message.mid, message.qos
        acked = threading.Event()

        def puback() -> None:
            if qos > 0 and generation == self._generation and not acked.is_set():
                acked.set()
                client.ack(mid, qos)

        def done(outcome: Outcome) -> None:
            try:
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
            finally:
                puback()

        try:
            # Blocks while the database is unreachable or the writer is full: the message
            # stays unacknowledged at the broker meanwhile, and so do the ones behind it.
            self.pipeline.submit(
                message.payload, identity=device_id, transport="mqtt", on_done=done
            )
        except Exception:
            # A message we cannot take must still free its in-flight slot, or enough of them
            # stop ingest for every device. Our senders delete a batch only on the device ack
            # on tw/v1/<device>/ack, which this message does not get, so nothing is lost.
            log.exception("could not take a message on %s; acknowledged unhandled", message.topic)
            metrics.MQTT_INTAKE_REFUSED.inc()
            puback()
