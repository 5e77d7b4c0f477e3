"""Secret hashing: argon2 for passwords people choose, SHA-256 for random keys and tokens, and
Mosquitto's PBKDF2-SHA512 (``$7$``) format for device MQTT passwords.

Random secrets of 192+ bits cannot be guessed, so a fast digest is enough for them and lets the
collector look a token up by its digest on every request. Mosquitto can only check its own
format, and storing that format is what lets any collector regenerate the broker's password file
from the database alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
# A hash to verify against when the user does not exist, so that a login for an unknown name
# takes as long as one with a wrong password (no user enumeration through timing).
_DUMMY_HASH = _HASHER.hash(base64.b64encode(os.urandom(16)).decode())

MOSQUITTO_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes
_MOSQUITTO_SALT_BYTES = 12


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def digest(secret: str) -> str:
    """The stored form of an API key or device token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2.0 password-file hash: ``$7$<iterations>$<salt b64>$<sha512 b64>``."""
    salt = salt if salt is not None else os.urandom(_MOSQUITTO_SALT_BYTES)
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS)
    salt_b64 = base64.b64encode(salt).decode()
    return f"$7${MOSQUITTO_ITERATIONS}${salt_b64}${base64.b64encode(derived).decode()}"


def mosquitto_verify(stored: str, password: str) -> bool:
    try:
        _, kind, iterations, salt_b64, hash_b64 = stored.split("$")
        if kind != "7":
            return False
        derived = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt_b64), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(base64.b64encode(derived).decode(), hash_b64)


def stable_mosquitto_hash(password: str, key: bytes) -> str:
    """The same hash every time for the same password and key (salt derived with HMAC).

    For the collector's own broker account, whose password comes from settings: every collector
    instance then writes byte-identical files and the broker is reloaded only on real changes.
    """
    salt = hmac.new(key, b"mqtt-salt\0" + password.encode(), hashlib.sha256).digest()
    return mosquitto_hash(password, salt[:_MOSQUITTO_SALT_BYTES])
