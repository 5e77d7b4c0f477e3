"""Short-lived access tokens for people: JWT signed with HS256 and the collector's secret key.

Only HS256 is accepted when decoding, so a token whose header says ``alg: none`` (or any other
algorithm) is refused; expiry, issue time and subject are required claims.

A token also names its session: ``gen``, the user's session generation when it was issued (a
password change, a reset or disabling the account moves it on, which ends every older token),
and ``jti``, a random id that logout revokes (``revoked_tokens``). Both are checked against the
database on every request (:func:`collector.auth.principal.load_session`).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

import jwt

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
_ISSUER = "thermowatch-collector"


class InvalidToken(ValueError):
    """The token is malformed, tampered with, expired or signed another way."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says: whose it is, its session generation, its id and expiry."""

    user_id: int
    generation: int
    jti: str
    expires_at: int


def issue(
    secret: str, user_id: int, ttl_s: int, *, generation: int = 1, now: float | None = None
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": str(user_id),
        "iat": issued,
        "exp": issued + ttl_s,
        "iss": _ISSUER,
        "gen": generation,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode(secret: str, token: str) -> Claims:
    """The claims of a valid token; raises :class:`InvalidToken` otherwise (whether its session
    still runs is the database's to say)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "gen", "jti"]},
        )
        generation, jti = claims["gen"], claims["jti"]
        if not isinstance(generation, int) or not isinstance(jti, str) or len(jti) > 64:
            raise ValueError("bad session claims")
        return Claims(int(claims["sub"]), generation, jti, int(claims["exp"]))
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidToken(type(exc).__name__) from None


def user_id_of(secret: str, token: str) -> int:
    """The user id a valid token speaks for; raises :class:`InvalidToken` otherwise."""
    return decode(secret, token).user_id


class MissingSecretKey(RuntimeError):
    """No usable ``THERMOWATCH_SECRET_KEY``; the message says how to make one."""


MIN_SECRET_KEY_LENGTH = 32


def signing_key(secret_key: str | None, *, development: bool) -> str:
    """The key that signs access tokens. There is no default: production refuses to start
    without one; development mode (auto-registration on) makes a random one per process, so
    tokens then do not survive a restart or work across instances."""
    if secret_key:
        if len(secret_key) < MIN_SECRET_KEY_LENGTH:
            raise MissingSecretKey(
                f"THERMOWATCH_SECRET_KEY must have at least {MIN_SECRET_KEY_LENGTH} characters"
            )
        return secret_key
    if development:
        log.warning("no THERMOWATCH_SECRET_KEY: using a random one (development mode only)")
        return secrets.token_urlsafe(32)
    raise MissingSecretKey(
        "THERMOWATCH_SECRET_KEY is not set; make one with `thermowatch collector generate-secret`"
    )
