"""The authenticated person behind a request, with their role and homes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, text

from collector.auth import hashing
from collector.auth.tokens import Claims


class Role(StrEnum):
    admin = "admin"
    technician = "technician"
    homeowner = "homeowner"


@dataclass(frozen=True, slots=True)
class Principal:
    """A user as the authorization rules see them; loaded fresh from the database per request,
    so a role change, a removed home or a disabled account applies to the next request."""

    user_id: int
    username: str
    role: Role
    home_ids: frozenset[int]
    via_api_key: bool = False
    token: Claims | None = None  # the access token of this request (None for API keys)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    def may_see_home(self, home_id: int | None) -> bool:
        if self.role in (Role.admin, Role.technician):
            return True
        return home_id is not None and home_id in self.home_ids


def load(conn: Connection, user_id: int, *, via_api_key: bool = False) -> Principal | None:
    row = conn.execute(
        text("SELECT username, role, disabled FROM users WHERE user_id = :u"), {"u": user_id}
    ).first()
    if row is None or row.disabled:
        return None
    return _principal(conn, user_id, row.username, row.role, via_api_key=via_api_key)


def _principal(
    conn: Connection,
    user_id: int,
    username: str,
    role: str,
    *,
    via_api_key: bool = False,
    token: Claims | None = None,
) -> Principal:
    homes = conn.execute(
        text("SELECT home_id FROM user_homes WHERE user_id = :u"), {"u": user_id}
    ).scalars()
    return Principal(user_id, username, Role(role), frozenset(homes), via_api_key, token)


def load_session(conn: Connection, claims: Claims) -> Principal | None:
    """The user of an access token whose session still runs: same session generation (no
    password change, reset or disabling since it was issued), not logged out, account enabled."""
    row = conn.execute(
        text(
            "SELECT username, role FROM users u "
            "WHERE user_id = :u AND NOT disabled AND session_generation = :g "
            "AND NOT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = :j)"
        ),
        {"u": claims.user_id, "g": claims.generation, "j": claims.jti},
    ).first()
    if row is None:
        return None
    return _principal(conn, claims.user_id, row.username, row.role, token=claims)


def load_by_api_key(conn: Connection, key: str, *, touch: bool = True) -> Principal | None:
    """``touch`` records the use (``last_used``); re-checks of a long request leave it be."""
    if touch:
        row = conn.execute(
            text(
                "UPDATE api_keys SET last_used = now() "
                "WHERE key_hash = :h AND revoked_at IS NULL RETURNING user_id"
            ),
            {"h": hashing.digest(key)},
        ).first()
        conn.commit()
    else:
        row = conn.execute(
            text("SELECT user_id FROM api_keys WHERE key_hash = :h AND revoked_at IS NULL"),
            {"h": hashing.digest(key)},
        ).first()
    return None if row is None else load(conn, row.user_id, via_api_key=True)
