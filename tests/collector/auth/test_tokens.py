"""Access tokens and secret handling, without a server: HS256 only, required claims, no default
signing key outside development mode, Mosquitto's hash format."""

from __future__ import annotations

import os
import subprocess
import sys

import jwt
import pytest

from collector.auth import hashing, tokens
from tests.support.processes import REPO

KEY = "k" * 64


def test_a_fresh_token_names_its_user() -> None:
    assert tokens.user_id_of(KEY, tokens.issue(KEY, 42, 60)) == 42


@pytest.mark.parametrize(
    "token",
    [
        tokens.issue(KEY, 1, 60, now=1_000_000),  # long expired
        tokens.issue("another key of forty characters.........", 1, 60),
        jwt.encode(
            {"sub": "1", "iat": 1, "exp": 2**40, "iss": "thermowatch-collector"}, None, "none"
        ),
        jwt.encode({"sub": "1", "iat": 1, "iss": "thermowatch-collector"}, KEY, "HS256"),  # no exp
        jwt.encode({"sub": "1", "iat": 1, "exp": 2**40, "iss": "x"}, KEY, "HS256"),
        jwt.encode(
            {"sub": "1", "iat": 1, "exp": 2**40, "iss": "thermowatch-collector"}, KEY, "HS512"
        ),
        "not.a.token",
    ],
)
def test_bad_tokens_are_invalid(token: str) -> None:
    with pytest.raises(tokens.InvalidToken):
        tokens.user_id_of(KEY, token)


def test_signing_key_has_no_default_outside_development() -> None:
    with pytest.raises(tokens.MissingSecretKey):
        tokens.signing_key(None, development=False)
    with pytest.raises(tokens.MissingSecretKey):
        tokens.signing_key("short", development=False)
    assert tokens.signing_key(KEY, development=False) == KEY
    one, two = (
        tokens.signing_key(None, development=True),
        tokens.signing_key(None, development=True),
    )
    assert one != two and len(one) >= 32


def test_the_collector_refuses_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "THERMOWATCH_SECRET_KEY"}
    env["THERMOWATCH_AUTO_REGISTER_DEVICES"] = "false"
    proc = subprocess.run(
        [sys.executable, "-m", "thermowatch.cli", "collector", "serve"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "THERMOWATCH_SECRET_KEY" in proc.stderr


def test_mosquitto_hashes_verify_and_differ_per_salt() -> None:
    first, second = hashing.mosquitto_hash("pw-1"), hashing.mosquitto_hash("pw-1")
    assert first != second and first.startswith("$7$101$")
    assert hashing.mosquitto_verify(first, "pw-1") and not hashing.mosquitto_verify(first, "pw-2")
    stable = hashing.stable_mosquitto_hash("pw-1", b"key")
    assert stable == hashing.stable_mosquitto_hash("pw-1", b"key")
    assert hashing.mosquitto_verify(stable, "pw-1")


def test_passwords_are_argon2_and_unknown_users_never_verify() -> None:
    stored = hashing.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert hashing.verify_password(stored, "correct horse battery")
    assert not hashing.verify_password(stored, "wrong")
    assert not hashing.verify_password(None, "correct horse battery")
