"""Creating users and checking their passwords (shared by the API and the command line)."""

from __future__ import annotations

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


def authenticate(conn: Connection, username: str, password: str) -> int | None:
    """The user id when the password is right and the account enabled."""
    row = conn.execute(
        text("SELECT user_id, password_hash, disabled FROM users WHERE username = :n"),
        {"n": username},
    ).first()
    ok = hashing.verify_password(row.password_hash if row else None, password)
    if not ok or row is None or row.disabled:
        return None
    return int(row.user_id)
