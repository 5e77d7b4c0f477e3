"""The audit log: who changed what, written in the same transaction as the change."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from collector.auth.principal import Principal


def record(
    conn: Connection,
    actor: Principal | str,
    action: str,
    target: str | None = None,
    **detail: Any,
) -> None:
    """Add an entry (the caller commits). ``detail`` must never hold a secret."""
    actor_id = actor.user_id if isinstance(actor, Principal) else None
    name = actor.username if isinstance(actor, Principal) else actor
    conn.execute(
        text(
            "INSERT INTO audit_log (actor_id, actor, action, target, detail) "
            "VALUES (:i, :a, :x, :t, CAST(:d AS jsonb))"
        ),
        {"i": actor_id, "a": name, "x": action, "t": target, "d": json.dumps(detail, default=str)},
    )
