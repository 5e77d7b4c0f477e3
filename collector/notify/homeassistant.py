"""Home Assistant MQTT discovery: each sensor appears as a temperature sensor and each alert as
a problem binary sensor in the homeowner's Home Assistant, without any configuration there.

Discovery messages follow Home Assistant's documented format
``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (retained JSON with ``name``,
``unique_id``, ``state_topic``, ``device_class``, ``unit_of_measurement`` and a ``device`` block
that groups the entities of one Thermowatch device). States are published retained on
``<base_topic>/<device>/<sensor>/temperature`` and ``<base_topic>/<device>/<sensor>/alert/
<rule id>/state`` (``ON``/``OFF``, with the alert as JSON attributes next to it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from collector.notify.base import Delivery, Notifier
from collector.notify.mqtt import BrokerConfig, publish_all

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _id(text: str) -> str:
    # Discovery node and object ids allow only [a-zA-Z0-9_-]; protocol ids may hold . and :.
    return _UNSAFE.sub("_", text)


class HomeAssistantConfig(BrokerConfig):
    discovery_prefix: str = "homeassistant"
    base_topic: str = "thermowatch"


def device_block(device_id: str, device_name: str | None) -> dict[str, Any]:
    return {
        "identifiers": [f"thermowatch_{_id(device_id)}"],
        "name": device_name or device_id,
        "manufacturer": "Thermowatch",
        "model": "Temperature monitor",
    }


def sensor_messages(
    cfg: HomeAssistantConfig,
    device_id: str,
    sensor_id: str,
    *,
    device_name: str | None,
    label: str | None,
    value: float | None,
) -> list[dict[str, Any]]:
    """Discovery config and current state of one temperature sensor (both retained)."""
    node, obj = f"tw_{_id(device_id)}", f"{_id(sensor_id)}_temperature"
    state_topic = f"{cfg.base_topic}/{device_id}/{sensor_id}/temperature"
    config = {
        "name": label or sensor_id,
        "unique_id": f"{node}_{obj}",
        "object_id": f"{node}_{obj}",
        "state_topic": state_topic,
        "device_class": "temperature",
        "state_class": "measurement",
        "unit_of_measurement": "°C",
        "device": device_block(device_id, device_name),
    }
    out = [
        _retained(f"{cfg.discovery_prefix}/sensor/{node}/{obj}/config", json.dumps(config), cfg),
    ]
    if value is not None:
        out.append(_retained(state_topic, f"{value:.2f}", cfg))
    return out


def alert_messages(cfg: HomeAssistantConfig, item: dict[str, Any]) -> list[dict[str, Any]]:
    """Discovery config, ON/OFF state and attributes of one (rule, sensor) alert."""
    device_id, sensor_id = item["device_id"], item["sensor_id"] or "device"
    node = f"tw_{_id(device_id)}"
    obj = f"{_id(sensor_id)}_alert_{item['rule_id']}"
    base = f"{cfg.base_topic}/{device_id}/{sensor_id}/alert/{item['rule_id']}"
    config = {
        "name": f"{item.get('rule_name') or item['kind']} ({sensor_id})",
        "unique_id": f"{node}_{obj}",
        "object_id": f"{node}_{obj}",
        "state_topic": f"{base}/state",
        "json_attributes_topic": f"{base}/attributes",
        "device_class": "problem",
        "payload_on": "ON",
        "payload_off": "OFF",
        "device": device_block(device_id, None),
    }
    on = item["state"] in ("firing", "acknowledged")
    return [
        _retained(
            f"{cfg.discovery_prefix}/binary_sensor/{node}/{obj}/config", json.dumps(config), cfg
        ),
        _retained(f"{base}/state", "ON" if on else "OFF", cfg),
        _retained(f"{base}/attributes", json.dumps(item, ensure_ascii=False), cfg),
    ]


def _retained(topic: str, payload: str, cfg: BrokerConfig) -> dict[str, Any]:
    return {"topic": topic, "payload": payload, "qos": cfg.qos, "retain": True}


class HomeAssistantNotifier(Notifier):
    kind = "homeassistant"
    Config = HomeAssistantConfig
    secret_fields = ("password",)
    destination_fields = ("host", "port")

    def send(self, delivery: Delivery) -> None:
        cfg = HomeAssistantConfig.model_validate(delivery.config)
        messages: list[dict[str, Any]] = []
        for item in delivery.items:
            messages.extend(alert_messages(cfg, item))
        publish_all(cfg, messages, allow_private=delivery.allow_private)
