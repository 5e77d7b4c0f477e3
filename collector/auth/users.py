"""Creating users and checking their passwords (shared by the API and the command line)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from collector.auth import hashing
from collector.auth.principal import Role

MIN_PASSWORD_LENGTH = 12


class WeakPassword(ValueError):
    """The password is too short to be allowed."""


def check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")


def create(
    conn: Connection,
    *,
    username: str,
    password: str,
    role: Role,
    home_ids: list[int] | tuple[int, ...] = (),
) -> int:
    """Insert a user (the caller commits); raises :class:`WeakPassword` or IntegrityError."""
    check_strength(password)
    user_id = conn.execute(
        text(
            "INSERT INTO users (username, password_hash, role) VALUES (:n, :h, :r) "
            "RETURNING user_id"
        ),
        {"n": username, "h": hashing.hash_password(password), "r": role.value},
    ).scalar_one()
    set_homes(conn, user_id=user_id, home_ids=home_ids)
    return int(user_id)


def set_homes(conn: Connection, *, user_id: int, home_ids: list[int] | tuple[int, ...]) -> None:
    conn.execute(text("DELETE FROM user_homes WHERE user_id = :u"), {"u": user_id})
    for home_id in sorted(set(home_ids)):
        conn.execute(
            text("INSERT INTO user_homes (user_id, home_id) VALUES (:u, :h)"),
            {"u": user_id, "h": home_id},
        )


@dataclass(frozen=True, slots=True)
class Account:
    """What checking a login needs to know about a user."""

    user_id: int
    username: str
    password_hash: str
    disabled: bool
    session_generation: int


def find(conn: Connection, username: str) -> Account | None:
    row = conn.execute(
        text(
            "SELECT user_id, username, password_hash, disabled, session_generation "
            "FROM users WHERE username = :n"
        ),
        {"n": username},
    ).first()
    return None if row is None else Account(*row)


def password_matches(account: Account | None, password: str) -> bool:
    """Runs the slow hash even for an unknown user (no enumeration by timing); a disabled
    account never matches."""
    ok = hashing.verify_password(account.password_hash if account else None, password)
    return ok and account is not None and not account.disabled


def authenticate(conn: Connection, username: str, password: str) -> int | None:
    """The user id when the password is right and the account enabled."""
    account = find(conn, username)
    return account.user_id if account and password_matches(account, password) else None
