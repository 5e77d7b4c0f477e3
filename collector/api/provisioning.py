"""Device credentials and config: what creating, rotating and decommissioning a device does
beyond its row — the broker files, the ingest caches, the retained config topic, the bundle."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fastapi import Request

from collector.api.schemas import (
    BundleSensor,
    DeviceConfig,
    MqttEndpoint,
    ProvisioningBundle,
    TokenEndpoint,
)
from collector.auth.credentials import DeviceSecrets
from collector.broker.backend import BrokerBackend
from collector.config import Settings
from shared import protocol as p

log = logging.getLogger(__name__)


def bundle(
    settings: Settings,
    device_id: str,
    secrets: DeviceSecrets,
    sensors: list[BundleSensor],
    config: DeviceConfig,
) -> ProvisioningBundle:
    mqtt_host = settings.public_mqtt_host or settings.mqtt_host
    coap_url = settings.public_coap_url or f"coap://{settings.coap_host}:{settings.coap_port}"
    http_base = settings.public_http_url or f"http://{settings.http_host}:{settings.http_port}"
    ca = _bundle_ca(settings)
    return ProvisioningBundle(
        device_id=device_id,
        mqtt=MqttEndpoint(
            host=mqtt_host,
            port=settings.public_mqtt_port or settings.mqtt_port,
            username=device_id,
            password=secrets.mqtt_password,
            tls=ca is not None,
            ca=ca,
        ),
        coap=TokenEndpoint(url=coap_url.rstrip("/"), token=secrets.token),
        http=TokenEndpoint(url=http_base.rstrip("/") + p.HTTP_INGEST_PATH, token=secrets.token),
        sensors=sensors,
        config=config,
    )


def _bundle_ca(settings: Settings) -> str | None:
    """The broker's CA as PEM text, read each time: re-running tls-init with a new CA must not
    leave bundles pointing at the old one until a restart."""
    path = settings.public_mqtt_ca_file or settings.mqtt_tls_ca_file
    if not path:
        return None
    return Path(path).read_text()


def credentials_changed(
    request: Request, device_id: str, *, mqtt_password: str | None, created: bool = False
) -> None:
    """After commit: forget cached answers and bring the broker in line, right away.
    ``mqtt_password`` is the new clear-text password, or None when the device was revoked."""
    state = request.app.state
    registry = getattr(state, "registry", None)
    if registry is not None:
        registry.forget(device_id)
    broker: BrokerBackend | None = getattr(state, "broker_sync", None)
    if broker is None:
        return
    if mqtt_password is None:
        broker.device_revoked(device_id)
    elif created:
        broker.device_created(device_id, mqtt_password)
    else:
        broker.device_rotated(device_id, mqtt_password)


def config_payload(config: DeviceConfig | None) -> bytes:
    if config is None:
        return b""
    return json.dumps(config.model_dump(exclude_none=True), separators=(",", ":")).encode()


def push_config(request: Request, device_id: str, config: DeviceConfig | None) -> bool:
    """Publish the config retained (QoS 1), so the device gets it on its next connection too;
    ``None`` clears the retained message. False when no MQTT connection is configured."""
    mqtt = getattr(request.app.state, "mqtt", None)
    if mqtt is None:
        return False
    info = mqtt.client.publish(
        p.topic(device_id, p.T_CONFIG), config_payload(config), qos=1, retain=True
    )
    # While disconnected paho keeps a QoS 1 message queued (in memory) and sends it on
    # reconnect; the database keeps the config either way and the answer says which happened.
    return bool(info.rc == 0)
