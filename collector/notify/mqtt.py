"""MQTT publish: each alert update as JSON on a topic of the target's broker.

The topic is ``<topic_prefix>/<home or "all">/<device>/<sensor or "device">/<rule id>``, so a
subscriber can pick one home, one device or everything with wildcards. Messages are retained by
default: a dashboard that connects later still sees each alert's latest state.
"""

from __future__ import annotations

import json
from typing import Any

from paho.mqtt import publish
from paho.mqtt.exception import MQTTException
from pydantic import BaseModel, Field

from collector.notify.base import Delivery, Notifier, NotifyError


class BrokerConfig(BaseModel):
    host: str
    port: int = Field(default=1883, gt=0, lt=65536)
    username: str | None = None
    password: str | None = None
    qos: int = Field(default=1, ge=0, le=2)


def publish_all(cfg: BrokerConfig, messages: list[dict[str, Any]]) -> None:
    """Publish and wait until the broker has them (QoS 1 acks), or raise NotifyError."""
    if not messages:
        return
    auth = {"username": cfg.username, "password": cfg.password} if cfg.username else None
    try:
        publish.multiple(messages, hostname=cfg.host, port=cfg.port, auth=auth)  # type: ignore[arg-type]
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
        )
