"""Password login: throttle, check the password within the hash cap, audit, issue a token.

No database connection is held while a password is hashed or waits for its turn, so a burst of
logins cannot take the connections the rest of the API needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from collector import metrics
from collector.auth import audit, tokens, users
from collector.auth.hash_limit import Busy, HashLimiter
from collector.auth.throttle import Attempt, Policy, Throttle

if TYPE_CHECKING:
    from collector.config import Settings

__all__ = ["Busy", "LoginService", "Throttled", "WrongCredentials"]

# The audit log's actor for a failed login whose user name matches no account: what was typed
# is not recorded (it is sometimes a password).
UNKNOWN_USER = "(unknown user)"


class Throttled(RuntimeError):
    """A pause after failures is running for this user name or address."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many failed logins")
        self.retry_after_s = retry_after_s


class WrongCredentials(RuntimeError):
    """Unknown user name, wrong password or disabled account (the caller cannot tell which)."""


@dataclass(frozen=True, slots=True)
class Session:
    access_token: str
    expires_in: int


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


class LoginService:
    """One per collector instance (the hash cap is per process; the throttle is shared)."""

    def __init__(
        self,
        engine: Engine,
        secret_key: str,
        *,
        policy: Policy,
        limiter: HashLimiter,
        token_ttl_s: int,
    ) -> None:
        self._engine = engine
        self._secret_key = secret_key
        self.throttle = Throttle(secret_key, policy)
        self.limiter = limiter
        self._ttl = token_ttl_s

    @classmethod
    def from_settings(cls, engine: Engine, secret_key: str, settings: Settings) -> LoginService:
        policy = Policy(
            user_free=settings.login_free_failures,
            address_free=settings.login_address_free_failures,
            base_s=settings.login_delay_base_s,
            max_s=settings.login_delay_max_s,
            forget_s=settings.login_forget_s,
            known_s=settings.login_known_address_days * 86400.0,
        )
        limiter = HashLimiter(
            settings.login_max_concurrent_hashes,
            settings.login_hash_queue,
            settings.login_hash_wait_s,
        )
        return cls(
            engine,
            secret_key,
            policy=policy,
            limiter=limiter,
            token_ttl_s=settings.access_token_ttl_s,
        )

    def login(self, username: str, password: str, *, address: str) -> Session:
        """Raises :class:`Throttled`, :class:`Busy` or :class:`WrongCredentials`."""
        try:
            with self.limiter.admit():
                return self._login(username, password, address)
        except Busy:
            metrics.LOGINS.labels("busy").inc()
            raise

    def _login(self, username: str, password: str, address: str) -> Session:
        with self._engine.connect() as conn:
            attempt = self.throttle.attempt(conn, username=username, address=address)
            if not attempt.allowed:
                metrics.LOGINS.labels("throttled").inc()
                raise Throttled(attempt.retry_after_s)
            account = users.find(conn, username)
            conn.rollback()  # end the read before the slow part; the connection goes back
        try:
            with self.limiter.slot():
                ok = users.password_matches(account, password)
        except Busy:
            with self._engine.connect() as conn:
                self.throttle.abandoned(conn, attempt)
            raise
        with self._engine.connect() as conn:
            if not ok or account is None:
                self._failed(conn, attempt, account, address)
                raise WrongCredentials()
            self.throttle.succeeded(conn, attempt)
            audit.record(conn, account.username, "login.success", account.username, address=address)
            conn.commit()
        metrics.LOGINS.labels("ok").inc()
        token = tokens.issue(
            self._secret_key,
            account.user_id,
            self._ttl,
            generation=account.session_generation,
        )
        return Session(token, self._ttl)

    def _failed(
        self, conn: Connection, attempt: Attempt, account: users.Account | None, address: str
    ) -> None:
        self.throttle.failed(conn, attempt)
        if account is None:
            audit.record(conn, UNKNOWN_USER, "login.failure", None, address=address)
        else:
            reason = "account disabled" if account.disabled else "wrong password"
            audit.record(
                conn,
                account.username,
                "login.failure",
                account.username,
                address=address,
                reason=reason,
            )
        conn.commit()
        metrics.LOGINS.labels("failed").inc()
