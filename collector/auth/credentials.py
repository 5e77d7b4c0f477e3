"""New secrets: device MQTT passwords and ingest tokens, and users' API keys.

Each is shown once, when it is made; only its hash is stored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from collector.auth import hashing

API_KEY_PREFIX = "twk_"


@dataclass(frozen=True, slots=True)
class DeviceSecrets:
    """Clear secrets for the provisioning bundle, and the hashes that are stored."""

    mqtt_password: str
    token: str
    mqtt_password_hash: str
    token_hash: str


def new_device_secrets() -> DeviceSecrets:
    password = secrets.token_urlsafe(24)
    # Short enough for a CoAP query option on a small board, long enough not to be guessed.
    token = secrets.token_urlsafe(24)
    return DeviceSecrets(
        mqtt_password=password,
        token=token,
        mqtt_password_hash=hashing.mosquitto_hash(password),
        token_hash=hashing.digest(token),
    )


def new_api_key() -> tuple[str, str, str]:
    """``(key, prefix shown in lists, stored hash)``."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:12], hashing.digest(key)
