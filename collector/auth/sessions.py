"""Ending sessions: one access token (logout) or all of a user's (a new session generation).

A password change, a reset and disabling an account end every session on their own (a trigger
on ``users``, migration 0008); these are for the person who wants out.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from collector.auth.tokens import Claims


def revoke(conn: Connection, token: Claims) -> None:
    """Refuse this token from now on (the caller commits). The row is kept only until the token
    would have expired anyway; expired rows are removed here."""
    conn.execute(text("DELETE FROM revoked_tokens WHERE expires_at < now()"))
    conn.execute(
        text(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at) "
            "VALUES (:j, :u, to_timestamp(:e)) ON CONFLICT (jti) DO NOTHING"
        ),
        {"j": token.jti, "u": token.user_id, "e": token.expires_at},
    )


def end_all(conn: Connection, user_id: int) -> None:
    """End every access token of this user (the caller commits); API keys are not sessions."""
    conn.execute(
        text("UPDATE users SET session_generation = session_generation + 1 WHERE user_id = :u"),
        {"u": user_id},
    )
