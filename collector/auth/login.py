"""Password login: throttle, check the password within the hash cap, audit, issue a token.

Two gates (:mod:`collector.auth.gate`) keep a flood of logins from costing the collector or the
owner: one on the password hashes, one on a small connection pool that logins have to themselves
(so a burst of logins cannot take the connections the rest of the API needs). No connection is
held while a password is hashed or waits for its turn. Logins from a (user name, address) pair
that logged in on this instance before go first through both; beyond the queues the answer is
503 with ``Retry-After``. When there is no room for the hash, nothing is counted: a flood turns
into cheap refusals, not into counted failures that would slow the owner's name.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from collector import metrics
from collector.auth import audit, tokens, users
from collector.auth.gate import Busy, PriorityGate
from collector.auth.throttle import Attempt, Policy, Throttle
from collector.db.connection import make_engine

if TYPE_CHECKING:
    from collector.config import Settings

__all__ = ["Busy", "LoginService", "Throttled", "WrongCredentials"]

# The audit log's actor for a failed login whose user name matches no account: what was typed
# is not recorded (it is sometimes a password).
UNKNOWN_USER = "(unknown user)"
# Connections for logins, apart from the API's pool, and logins that may wait for one.
_POOL_SIZE = 4
_POOL_QUEUE = 32
_POOL_WAIT_S = 5.0
# Known pairs remembered in memory (only successful logins enter, so an attacker cannot fill it).
_KNOWN_MAX = 10_000


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


def _hash_metrics(running: int, peak: int) -> None:
    metrics.LOGIN_HASHES_RUNNING.set(running)
    metrics.LOGIN_HASHES_PEAK.set(peak)


class LoginService:
    """One per collector instance (the gates are per process; the throttle is shared)."""

    def __init__(
        self,
        engine: Engine,
        secret_key: str,
        *,
        policy: Policy,
        hashes: PriorityGate,
        token_ttl_s: int,
        connections: int = _POOL_SIZE,
    ) -> None:
        self._engine = engine
        self._secret_key = secret_key
        self.throttle = Throttle(secret_key, policy)
        self.hashes = hashes
        # As many as the engine's pool holds, so that the pool itself never has waiters.
        self.connections = PriorityGate(connections, _POOL_QUEUE, _POOL_WAIT_S)
        self._ttl = token_ttl_s
        self._known_s = policy.known_s
        self._known: OrderedDict[str, float] = OrderedDict()
        self._known_lock = threading.Lock()

    @classmethod
    def from_settings(cls, secret_key: str, settings: Settings) -> LoginService:
        policy = Policy(
            user_free=settings.login_free_failures,
            address_free=settings.login_address_free_failures,
            base_s=settings.login_delay_base_s,
            max_s=settings.login_delay_max_s,
            forget_s=settings.login_forget_s,
            known_s=settings.login_known_address_days * 86400.0,
        )
        hashes = PriorityGate(
            settings.login_max_concurrent_hashes,
            settings.login_hash_queue,
            settings.login_hash_wait_s,
            on_change=_hash_metrics,
        )
        # The connections gate keeps this pool from having waiters; its timeout is a last resort.
        engine = make_engine(
            settings.database_url, pool_size=_POOL_SIZE, max_overflow=0, pool_timeout_s=30
        )
        return cls(
            engine,
            secret_key,
            policy=policy,
            hashes=hashes,
            token_ttl_s=settings.access_token_ttl_s,
        )

    def close(self) -> None:
        self._engine.dispose()

    def login(self, username: str, password: str, *, address: str) -> Session:
        """Raises :class:`Throttled`, :class:`Busy` or :class:`WrongCredentials`."""
        try:
            return self._login(username, password, address)
        except Busy:
            metrics.LOGINS.labels("busy").inc()
            raise

    def _login(self, username: str, password: str, address: str) -> Session:
        pair = self.throttle.pair_key(username, address)
        vouched = self._is_known(pair)
        with self.connections.slot(priority=vouched), self._engine.connect() as conn:
            attempt = self.throttle.attempt(
                conn,
                username=username,
                address=address,
                room=lambda known: known or self.hashes.has_room(),
            )
            if attempt.busy:
                raise Busy(1.0)
            if not attempt.allowed:
                metrics.LOGINS.labels("throttled").inc()
                raise Throttled(attempt.retry_after_s)
            account = users.find(conn, username)
            conn.rollback()  # end the read before the slow part; the connection goes back
        try:
            with self.hashes.slot(priority=attempt.known):
                ok = users.password_matches(account, password)
        except Busy:
            with self.connections.slot(priority=True), self._engine.connect() as conn:
                self.throttle.abandoned(conn, attempt)
            raise
        # Finishing work goes first: it releases what the attempt holds.
        with self.connections.slot(priority=True), self._engine.connect() as conn:
            if not ok or account is None:
                self._failed(conn, attempt, account, address)
                raise WrongCredentials()
            self.throttle.succeeded(conn, attempt)
            audit.record(conn, account.username, "login.success", account.username, address=address)
            conn.commit()
        self._remember(pair)
        metrics.LOGINS.labels("ok").inc()
        token = tokens.issue(
            self._secret_key,
            account.user_id,
            self._ttl,
            generation=account.session_generation,
        )
        return Session(token, self._ttl)

    def _is_known(self, pair: str) -> bool:
        with self._known_lock:
            until = self._known.get(pair)
            return until is not None and until > time.monotonic()

    def _remember(self, pair: str) -> None:
        with self._known_lock:
            self._known[pair] = time.monotonic() + self._known_s
            self._known.move_to_end(pair)
            while len(self._known) > _KNOWN_MAX:
                self._known.popitem(last=False)

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
