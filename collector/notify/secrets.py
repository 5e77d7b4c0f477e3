"""Secrets of notification targets (passwords, webhook URLs and signing secrets), encrypted at
rest with a key derived from the server secret (``THERMOWATCH_SECRET_KEY``).

Each secret field is stored in the target's ``config`` as ``twenc:v1:<base64 nonce+ciphertext>``:
AES-256-GCM with a key derived by HKDF-SHA256 from the server secret. The associated data binds
the ciphertext to the target's kind, the field's name and the target's destination (host, port,
URL, STARTTLS), so a secret copied to another field, or left in place while the destination is
changed behind the API's back, no longer decrypts: a kept secret only ever opens for the place
it was entered for.

Values that are not sealed (rows written before encryption, or by hand) are read as they are.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from collector.notify.base import notifier_class

PREFIX = "twenc:v1:"
MASK = "********"
_INFO = b"thermowatch notification-target secrets v1"
_NONCE_BYTES = 12


class SecretError(ValueError):
    """A stored secret cannot be opened (another server secret, or a changed destination)."""


class SecretBox:
    """Seals and opens strings with the key derived from one server secret."""

    def __init__(self, server_secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
            server_secret.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, aad: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode(), aad)
        return PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii")

    def open(self, token: str, aad: bytes) -> str:
        try:
            raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretError("a stored secret cannot be decrypted") from None


@lru_cache(maxsize=4)
def box_for(server_secret: str) -> SecretBox:
    return SecretBox(server_secret)


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def secret_fields(kind: str) -> tuple[str, ...]:
    return notifier_class(kind).secret_fields


def destination_fields(kind: str) -> tuple[str, ...]:
    return notifier_class(kind).destination_fields


def destination(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The fields that say where a target's secrets go (from a config with secrets open)."""
    return {f: config.get(f) for f in destination_fields(kind)}


def _aad(kind: str, name: str, where: dict[str, Any]) -> bytes:
    return b"\0".join(
        (b"thermowatch notify-target", kind.encode(), name.encode(), _canonical(where))
    )


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _order(kind: str) -> tuple[list[str], list[str]]:
    """Secret fields that are part of the destination (a webhook's URL) come first: their
    associated data is the rest of the destination; the other secrets are bound to all of it."""
    secrets, where = secret_fields(kind), destination_fields(kind)
    return [f for f in secrets if f in where], [f for f in secrets if f not in where]


def seal_config(box: SecretBox, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (validated, secrets in clear) as stored: every set secret field sealed
    (always: a value that merely looks sealed is a value like any other)."""
    out = dict(config)
    first, rest = _order(kind)
    base = {f: v for f, v in destination(kind, config).items() if f not in first}
    for name in first:
        if config.get(name) is not None:
            out[name] = box.seal(str(config[name]), _aad(kind, name, base))
    full = destination(kind, config)
    for name in rest:
        if config.get(name) is not None:
            out[name] = box.seal(str(config[name]), _aad(kind, name, full))
    return out


def open_config(box: SecretBox | None, kind: str, stored: dict[str, Any]) -> dict[str, Any]:
    """The stored config with its secrets in clear, or :class:`SecretError`."""
    out = dict(stored)
    first, rest = _order(kind)
    base = {f: v for f, v in destination(kind, stored).items() if f not in first}
    for name in [*first, *rest]:
        value = stored.get(name)
        if not isinstance(value, str) or not is_sealed(value):
            continue
        if box is None:
            raise SecretError("no server secret to decrypt the stored secrets with")
        where = base if name in first else destination(kind, out)
        out[name] = box.open(value, _aad(kind, name, where))
    return out


def mask_url(url: str) -> str:
    """A webhook URL as those who may not edit the target see it: scheme and host only (the
    path and query are where hooks keep their tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}/{MASK}"
