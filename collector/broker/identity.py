"""The collector's names at the broker: its MQTT client id and its shared-subscription group.

Both are derived from the secret key, so a device (which never learns the secret) cannot guess
them: a device that connected with a collector's client id would take over its session, and on
the files back end one that subscribed with the collectors' group would take a share of every
device's readings (Mosquitto's acl_file grants any SUBSCRIBE and drops what it may not read at
delivery). Binding device client ids to user names stops the first at the broker; the names
being secret is what stops the second on the files back end, and a second wall for the first.

The client id is stable for one host and HTTP port, so a restarted instance resumes its
persistent session (its unacknowledged share of messages), and two instances on one host still
differ. Every collector that shares the secret key derives the same group.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CLIENT_ID_PREFIX = "tw-collector-"
SHARED_GROUP_PREFIX = "thermowatch-collectors-"
# 80 and 96 bits: far beyond guessing over a network, short enough to read in a broker log.
_CLIENT_TAG_HEX = 20
_GROUP_TAG_HEX = 24


def _tag(secret_key: str, purpose: str, length: int) -> str:
    digest = hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).hexdigest()
    return digest[:length]


def collector_client_id(secret_key: str | None, hostname: str, http_port: int) -> str:
    """``tw-collector-<host>-<tag>``; without a secret (development) a random tag per process."""
    if not secret_key:
        return f"{CLIENT_ID_PREFIX}{hostname}-{secrets.token_hex(_CLIENT_TAG_HEX // 2)}"
    tag = _tag(secret_key, f"mqtt client id\0{hostname}\0{http_port}", _CLIENT_TAG_HEX)
    return f"{CLIENT_ID_PREFIX}{hostname}-{tag}"


def collector_shared_group(secret_key: str | None, fallback: str) -> str:
    """The group every collector with this secret joins; ``fallback`` without a secret
    (development: instances must still agree, and nothing is secret there anyway)."""
    if not secret_key:
        return fallback
    return SHARED_GROUP_PREFIX + _tag(secret_key, "mqtt shared group", _GROUP_TAG_HEX)
