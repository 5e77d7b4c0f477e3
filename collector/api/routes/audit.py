"""The audit log of admin actions (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import text

from collector.api.deps import DbConn
from collector.api.schemas import MAX_ROW_ID, AuditEntry

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", response_model=list[AuditEntry], summary="Recent admin actions, newest first")
def audit_log(
    db: DbConn,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="Page: entries older than this id")
    ] = None,
) -> list[AuditEntry]:
    rows = db.execute(
        text(
            "SELECT audit_id, time, actor, action, target, detail FROM audit_log "
            "WHERE (CAST(:b AS bigint) IS NULL OR audit_id < :b) ORDER BY audit_id DESC LIMIT :n"
        ),
        {"b": before_id, "n": limit},
    ).mappings()
    return [AuditEntry(**r) for r in rows]
