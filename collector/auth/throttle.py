"""Login throttling: an exponential delay after failures that slows guessing without locking the
owner out.

Three counters are kept in ``login_failures`` (shared by every collector instance): one per user
name, one per client address and one per (user name, address) pair. Each login attempt counts as
a failure *before* its password is checked, under a row lock, so concurrent guesses cannot slip
past the limit together; a correct password gives its count back. After ``free`` failures a
counter asks for a pause before the next attempt: ``base_s``, doubling with every further
failure, at most ``max_s``. Attempts during the pause are refused (429) and are not failures, so
they do not extend it, and the pause is short: a correct password after it always works.

A successful login makes its (user name, address) pair *known* for ``known_s``. From a known
pair only the pair's own counter applies and counts: an attacker guessing the owner's password
from elsewhere slows logins of that name from new addresses, never the owner's from their usual
one (nor does the owner wait on the rows the attacker keeps busy).
Addresses get more free failures than names, so people behind one NAT do not slow each other.

Rows are keyed by an HMAC of the user name and address under a key derived from the server
secret: what people type as a user name (sometimes their password) is never stored. Clock: the
database's, so that every instance agrees; tests pass ``now`` to move a fake one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, text

ADDRESS, PAIR, USER = "address", "pair", "user"
_CLEANUP_BATCH = 50  # stale rows removed per attempt: the table stays small under any spray


@dataclass(frozen=True, slots=True)
class Policy:
    """How failures turn into pauses (the ``login_*`` settings)."""

    user_free: int = 5
    address_free: int = 20
    base_s: float = 1.0
    max_s: float = 60.0
    forget_s: float = 900.0  # a counter with no failure for this long starts again from zero
    known_s: float = 30 * 86400.0

    def delay_s(self, failures: int, *, free: int) -> float:
        """The pause after ``failures`` failures of a counter allowing ``free`` (same as SQL)."""
        if failures < free:
            return 0.0
        return min(self.max_s, self.base_s * 2.0 ** min(failures - free, 40))


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt: let through (and counted as a failure until it succeeds) or refused."""

    keys: tuple[tuple[str, str], ...]
    allowed: bool
    retry_after_s: float = 0.0
    known: bool = False
    busy: bool = False  # refused for want of room to check the password, not for a pause
    counted: tuple[tuple[str, str], ...] = field(default=())


def normalize_address(address: str) -> str:
    """The unit that an address counter covers: one IPv4 address, or an IPv6 /64 (what one
    customer or host gets; counting single IPv6 addresses would give an attacker 2^64 tries)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]  # not an IP (a test client, a unix socket): counted as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# The same rules as Policy.delay_s, in SQL: free failures per scope, and a counter's failures
# as they count now (none after a quiet ``forget_s``).
_FREE = "(CASE scope WHEN 'address' THEN :afree ELSE :ufree END)"
_EFFECTIVE = (
    "(CASE WHEN last_failure < {now} - make_interval(secs => :forget) THEN 0 ELSE failures END)"
)
_NOW = "coalesce(CAST(:now AS timestamptz), now())"


def _delay_sql(failures: str) -> str:
    return (
        f"(CASE WHEN {failures} < {_FREE} THEN 0 "
        f"ELSE least(:max, :base * power(2, least({failures} - {_FREE}, 40))) END)"
    )


_EFFECTIVE_NOW = _EFFECTIVE.format(now=_NOW)
# A counter's state: how long its pause still runs (below the free failures there is none, and
# last_failure may be -infinity, which interval arithmetic refuses) and whether it vouches for
# its pair.
_STATE = (
    f"SELECT scope, key, CASE WHEN {_EFFECTIVE_NOW} < {_FREE} THEN 0 "
    f"  ELSE extract(epoch FROM last_failure "
    f"    + make_interval(secs => {_delay_sql(_EFFECTIVE_NOW)}) - {_NOW}) END AS wait_s, "
    f"  coalesce(known_until > {_NOW}, false) AS known "
    "FROM login_failures "
)

Keys = tuple[tuple[str, str], ...]


def _bind(keys: Keys, params: dict[str, object]) -> str:
    """``(scope, key)`` value tuples for SQL, their values added to ``params``."""
    for i, (scope, key) in enumerate(keys):
        params[f"s{i}"], params[f"k{i}"] = scope, key
    return ", ".join(f"(:s{i}, :k{i})" for i in range(len(keys)))


def _decide(
    keys: Keys, rows: Sequence[Row[Any]], known: bool | None = None
) -> tuple[bool, Keys, float]:
    """Whether the pair is known, the counters that count for this attempt (from a known pair
    only the pair's own), and how long the longest of their pauses still runs."""
    if known is None:
        known = any(r.known for r in rows if r.scope == PAIR)
    counted = tuple(k for k in keys if k[0] == PAIR or not known)
    wait_s = max((float(r.wait_s) for r in rows if (r.scope, r.key) in counted), default=0.0)
    return known, counted, wait_s


class Throttle:
    """The counters of one installation; ``key`` is the server secret (see module docstring)."""

    def __init__(self, key: str | bytes, policy: Policy | None = None) -> None:
        secret = key.encode() if isinstance(key, str) else key
        self._key = hashlib.sha256(b"thermowatch login throttle\0" + secret).digest()
        self.policy = policy or Policy()

    def _keys(self, username: str, address: str) -> tuple[tuple[str, str], ...]:
        def mac(scope: str, value: str) -> str:
            digest = hmac.new(self._key, f"{scope}\0{value}".encode(), hashlib.sha256)
            return digest.hexdigest()

        unit = normalize_address(address)
        # Sorted, so that every attempt locks rows in one order (no deadlocks between them).
        return tuple(
            sorted(
                (
                    (ADDRESS, mac(ADDRESS, unit)),
                    (PAIR, mac(PAIR, f"{username}\0{unit}")),
                    (USER, mac(USER, username)),
                )
            )
        )

    def _params(self, now: datetime | None) -> dict[str, object]:
        p = self.policy
        return {
            "now": now,
            "ufree": p.user_free,
            "afree": p.address_free,
            "base": p.base_s,
            "max": p.max_s,
            "forget": p.forget_s,
            "known": p.known_s,
        }

    def pair_key(self, username: str, address: str) -> str:
        """The key of the (user name, address) pair, for remembering known pairs in memory."""
        return next(key for scope, key in self._keys(username, address) if scope == PAIR)

    def attempt(
        self,
        conn: Connection,
        *,
        username: str,
        address: str,
        now: datetime | None = None,
        room: Callable[[bool], bool] | None = None,
    ) -> Attempt:
        """Let an attempt through (counting it as a failure) or refuse it with the time to wait.
        ``room(known)`` says whether its password could be checked now; when not, the attempt
        is refused as ``busy`` and nothing is counted. Commits: the count must hold before the
        password is checked."""
        keys = self._keys(username, address)
        params = self._params(now)
        try:
            # A plain read first: during an attack nearly every attempt is refused here, without
            # a lock or a write, so a flood does not queue on the counters' rows.
            rows = conn.execute(
                text(_STATE + f"WHERE (scope, key) IN ({_bind(keys, params)})"), params
            ).all()
            known, counted, wait_s = _decide(keys, rows)
            if wait_s > 0 or (room is not None and not room(known)):
                conn.rollback()
                return Attempt(
                    keys, allowed=False, retry_after_s=wait_s, known=known, busy=wait_s <= 0
                )
            # Then the same decision under the rows' locks, and the count, in one transaction.
            values = _bind(counted, params)
            conn.execute(
                text(
                    f"INSERT INTO login_failures (scope, key) VALUES {values} "
                    "ON CONFLICT DO NOTHING"
                ),
                params,
            )
            rows = conn.execute(
                text(_STATE + f"WHERE (scope, key) IN ({values}) ORDER BY scope, key FOR UPDATE"),
                params,
            ).all()
            _, _, wait_s = _decide(counted, rows, known=known)
            if wait_s > 0:
                conn.commit()
                return Attempt(keys, allowed=False, retry_after_s=wait_s, known=known)
            effective = _EFFECTIVE.format(now=_NOW)
            conn.execute(
                text(
                    f"UPDATE login_failures SET failures = {effective} + 1, "
                    f"  last_failure = {_NOW}, "
                    f"  expires_at = greatest({_NOW} + make_interval(secs => :forget), "
                    "    known_until) "
                    f"WHERE (scope, key) IN ({values})"
                ),
                params,
            )
            self._cleanup(conn, params)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return Attempt(keys, allowed=True, known=known, counted=counted)

    def failed(self, conn: Connection, attempt: Attempt, *, now: datetime | None = None) -> None:
        """The password was wrong: the pause runs from now (the check itself took a while)."""
        self._update(conn, attempt, "last_failure = greatest(last_failure, {now})", now)

    def succeeded(self, conn: Connection, attempt: Attempt, *, now: datetime | None = None) -> None:
        """The password was right: give the count back, forget the pair's failures and make the
        pair known. The user name's and address's other failures stay (an attacker's too)."""
        self._update(
            conn,
            attempt,
            "failures = CASE WHEN scope = 'pair' THEN 0 ELSE greatest(failures - 1, 0) END, "
            "known_until = CASE WHEN scope = 'pair' "
            "  THEN {now} + make_interval(secs => :known) ELSE known_until END, "
            "expires_at = CASE WHEN scope = 'pair' "
            "  THEN greatest(expires_at, {now} + make_interval(secs => :known)) "
            "  ELSE expires_at END",
            now,
        )

    def abandoned(self, conn: Connection, attempt: Attempt) -> None:
        """The password was never checked (the collector was too busy): give the count back."""
        self._update(conn, attempt, "failures = greatest(failures - 1, 0)", None)

    def _update(
        self, conn: Connection, attempt: Attempt, assignments: str, now: datetime | None
    ) -> None:
        if not attempt.counted:
            return
        params = self._params(now)
        values = _bind(attempt.counted, params)
        try:
            conn.execute(
                text(
                    f"UPDATE login_failures SET {assignments.format(now=_NOW)} "
                    f"WHERE (scope, key) IN ({values})"
                ),
                params,
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _cleanup(self, conn: Connection, params: dict[str, object]) -> None:
        conn.execute(
            text(
                "DELETE FROM login_failures WHERE ctid IN ("
                f"  SELECT ctid FROM login_failures WHERE expires_at < {_NOW} "
                "  LIMIT :batch FOR UPDATE SKIP LOCKED)"
            ),
            {**params, "batch": _CLEANUP_BATCH},
        )
