"""Login rate limiting, kept in PostgreSQL so every collector instance sees the same failures."""

from __future__ import annotations

from sqlalchemy import Connection, text

_NAME_MAX = 200  # failures are recorded for any text sent as a user name; keep rows small


def blocked(conn: Connection, *, username: str, address: str, limit: int, window_s: int) -> bool:
    """True when this user name or this address failed ``limit`` times within the window."""
    row = conn.execute(
        text(
            "SELECT count(*) FILTER (WHERE username = :n), count(*) FILTER (WHERE address = :a) "
            "FROM login_failures WHERE time > now() - make_interval(secs => :w) "
            "AND (username = :n OR address = :a)"
        ),
        {"n": username[:_NAME_MAX], "a": address, "w": window_s},
    ).one()
    return int(row[0]) >= limit or int(row[1]) >= limit * 4


def record_failure(conn: Connection, *, username: str, address: str) -> None:
    conn.execute(
        text("INSERT INTO login_failures (username, address) VALUES (:n, :a)"),
        {"n": username[:_NAME_MAX], "a": address},
    )
    conn.commit()


def clear(conn: Connection, *, username: str, window_s: int) -> None:
    """After a successful login: forget this user's failures and old rows of anyone."""
    conn.execute(
        text(
            "DELETE FROM login_failures WHERE username = :n "
            "OR time < now() - make_interval(secs => :w)"
        ),
        {"n": username[:_NAME_MAX], "w": window_s},
    )
    conn.commit()
