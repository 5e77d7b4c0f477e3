"""The authenticated person behind a request, with their role and homes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, text

from collector.auth import hashing


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
    homes = conn.execute(
        text("SELECT home_id FROM user_homes WHERE user_id = :u"), {"u": user_id}
    ).scalars()
    return Principal(user_id, row.username, Role(row.role), frozenset(homes), via_api_key)


def load_by_api_key(conn: Connection, key: str) -> Principal | None:
    row = conn.execute(
        text(
            "UPDATE api_keys SET last_used = now() "
            "WHERE key_hash = :h AND revoked_at IS NULL RETURNING user_id"
        ),
        {"h": hashing.digest(key)},
    ).first()
    conn.commit()
    return None if row is None else load(conn, row.user_id, via_api_key=True)
