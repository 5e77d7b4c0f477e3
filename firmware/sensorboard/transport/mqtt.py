"""MQTT through micropython-lib's ``umqtt.simple``: QoS 1 batches on ``tw/v1/<dev>/readings``,
acknowledgements from the collector on ``tw/v1/<dev>/ack``, the collector's retained config on
``tw/v1/<dev>/config`` (applied by ``sensorboard.pushed``), a retained status with a last will.

The client id is the device id (a stable id keeps the broker session), and the session is kept
(``clean_session=False``) so an ack published while the board was briefly away still arrives.
A broker PUBACK only means the broker has the batch; the spool waits for the collector's ack.
"""

import time

from umqtt.simple import MQTTClient

from sensorboard import VERSION
from sensorboard.transport import Transport
from shared import protocol


class MqttTransport(Transport):
    def __init__(self, cfg, boot_id):
        Transport.__init__(self, boot_id)
        device = cfg.device_id
        self.topic_readings = protocol.topic(device, protocol.T_READINGS)
        self.topic_ack = protocol.topic(device, protocol.T_ACK)
        self.topic_ack_bytes = self.topic_ack.encode()  # umqtt hands topics over as bytes
        # Bytes only: what umqtt hands over, and one object less kept for the board's life.
        self.topic_config = protocol.topic(device, protocol.T_CONFIG).encode()
        self.topic_status = protocol.topic(device, protocol.T_STATUS)
        self.client = None  # the connected client, None while offline
        # One client for the board's life: umqtt opens a new socket on each connect().
        self.mqtt = MQTTClient(
            device,
            cfg.mqtt_host,
            cfg.mqtt_port,
            cfg.mqtt_username or None,
            cfg.mqtt_password,
            cfg.mqtt_keepalive_s,
        )
        self.mqtt.set_callback(self._on_message)
        self.mqtt.set_last_will(
            self.topic_status, protocol.encode_status("offline"), retain=True, qos=1
        )
        self.timeout_s = cfg.socket_timeout_s
        self.keepalive_ms = cfg.mqtt_keepalive_s * 500  # ping at half the keepalive
        self._last_io = time.ticks_ms()

    def connect(self):
        self.close()
        client = self.mqtt
        try:
            client.connect(clean_session=False)
            client.sock.settimeout(self.timeout_s)
            client.subscribe(self.topic_ack, qos=1)
            # The broker sends the retained config after every subscribe, i.e. at each connect.
            client.subscribe(self.topic_config, qos=1)
            client.publish(
                self.topic_status,
                protocol.encode_status("online", self.boot_id, VERSION),
                retain=True,
                qos=1,
            )
        except Exception as exc:  # refused, unreachable, bad credentials (MQTTException 5)
            self.note_error("connect: " + repr(exc))
            _close_socket(client)
            return False
        self.client = client
        self.connected = True
        self._last_io = time.ticks_ms()
        return True

    def _on_message(self, topic, msg):
        if topic == self.topic_ack_bytes:
            self.handle_ack(msg)
        elif topic == self.topic_config:
            self.pushed = msg

    def send(self, seq, payload):
        if self.client is None:
            return False
        try:
            self.client.publish(self.topic_readings, payload, qos=1)
            self._last_io = time.ticks_ms()
            return True
        except Exception as exc:
            self._lost("publish: " + repr(exc))
            return False

    def poll(self):
        client = self.client
        if client is None:
            return
        try:
            # check_msg switches the socket to blocking without a timeout: restore it each time.
            for _ in range(4):
                if client.check_msg() is None:
                    break
                self._last_io = time.ticks_ms()
            client.sock.settimeout(self.timeout_s)
            if (
                self.keepalive_ms
                and time.ticks_diff(time.ticks_ms(), self._last_io) > self.keepalive_ms
            ):
                client.ping()
                self._last_io = time.ticks_ms()
        except Exception as exc:
            self._lost("poll: " + repr(exc))

    def _lost(self, text):
        self.note_error(text)
        _close_socket(self.client)
        self.client = None
        self.connected = False

    def close(self):
        if self.client is not None:
            try:
                self.client.disconnect()
            except Exception:
                _close_socket(self.client)
        self.client = None
        self.connected = False


def _close_socket(client):
    try:
        if client is not None and client.sock is not None:
            client.sock.close()
    except Exception:
        pass
