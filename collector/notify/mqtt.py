"""MQTT publish: each alert update as JSON on a topic of the target's broker.

The topic is ``<topic_prefix>/<home or "all">/<device>/<sensor or "device">/<rule id>``, so a
subscriber can pick one home, one device or everything with wildcards. Messages are retained by
default: a dashboard that connects later still sees each alert's latest state.

The client connects to the broker address checked just before (notify/destinations.py), not to
the name again; MQTT has no host name in its handshake, so nothing else needs the name.
"""

from __future__ import annotations

import json
from typing import Any

from paho.mqtt import publish
from paho.mqtt.exception import MQTTException
from pydantic import BaseModel, Field

from collector.notify.base import Delivery, Notifier, NotifyError
from collector.notify.destinations import UnsafeDestination, connect_address


class BrokerConfig(BaseModel):
    host: str
    port: int = Field(default=1883, gt=0, lt=65536)
    username: str | None = None
    password: str | None = None
    qos: int = Field(default=1, ge=0, le=2)


def publish_all(
    cfg: BrokerConfig, messages: list[dict[str, Any]], *, allow_private: bool = False
) -> None:
    """Publish and wait until the broker has them (QoS 1 acks), or raise NotifyError."""
    if not messages:
        return
    try:
        address = connect_address(cfg.host, cfg.port, allow_private=allow_private)
    except UnsafeDestination as exc:
        raise NotifyError(f"destination refused: {exc}", retryable=exc.retryable) from None
    auth = {"username": cfg.username, "password": cfg.password} if cfg.username else None
    try:
        publish.multiple(messages, hostname=address, port=cfg.port, auth=auth)  # type: ignore[arg-type]
    except (OSError, MQTTException) as exc:
        raise NotifyError(f"mqtt: {type(exc).__name__}: {exc}") from None


class MqttConfig(BrokerConfig):
    topic_prefix: str = "thermowatch/alerts"
    retain: bool = True


def alert_topic(prefix: str, item: dict[str, Any]) -> str:
    home = item.get("home_id")
    return "/".join(
        (
            prefix,
            str(home) if home is not None else "all",
            item["device_id"],
            item["sensor_id"] or "device",
            str(item["rule_id"]),
        )
    )


class MqttNotifier(Notifier):
    kind = "mqtt"
    Config = MqttConfig
    secret_fields = ("password",)
    destination_fields = ("host", "port")

    def send(self, delivery: Delivery) -> None:
        cfg = MqttConfig.model_validate(delivery.config)
        publish_all(
            cfg,
            [
                {
                    "topic": alert_topic(cfg.topic_prefix, item),
                    "payload": json.dumps(item, ensure_ascii=False),
                    "qos": cfg.qos,
                    "retain": cfg.retain,
                }
                for item in delivery.items
            ],
            allow_private=delivery.allow_private,
        )
