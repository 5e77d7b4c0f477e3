"""Homes (sites): admins manage them; homeowners see their own."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import Connection, text

from collector.api.deps import CurrentUser, DbConn, RowId
from collector.api.schemas import HomeIn, HomeOut
from collector.auth import audit
from collector.auth.principal import Role

router = APIRouter(prefix="/api/v1/homes", tags=["homes"])

_SELECT = (
    "SELECT h.home_id, h.name, h.created_at, "
    "  coalesce(array_agg(d.device_id ORDER BY d.device_id) "
    "           FILTER (WHERE d.device_id IS NOT NULL), '{}') AS device_ids "
    "FROM homes h LEFT JOIN devices d USING (home_id) "
)


def _home(db: Connection, home_id: int) -> HomeOut:
    row = (
        db.execute(text(_SELECT + "WHERE h.home_id = :h GROUP BY h.home_id"), {"h": home_id})
        .mappings()
        .first()
    )
    if row is None:
        raise HTTPException(status_code=404, detail="home not found")
    return HomeOut(**row)


@router.get(
    "",
    response_model=list[HomeOut],
    summary="Homes you may see",
    description="Admins and technicians see all homes; homeowners their own.",
)
def list_homes(db: DbConn, who: CurrentUser) -> list[HomeOut]:
    where, params = "", {}
    if who.role is Role.homeowner:
        where, params = "WHERE h.home_id = ANY(:mine) ", {"mine": sorted(who.home_ids)}
    sql = _SELECT + where + "GROUP BY h.home_id ORDER BY h.home_id"
    return [HomeOut(**r) for r in db.execute(text(sql), params).mappings()]


@router.post("", response_model=HomeOut, status_code=201, summary="Create a home")
def create_home(body: HomeIn, db: DbConn, who: CurrentUser) -> HomeOut:
    home_id = db.execute(
        text("INSERT INTO homes (name) VALUES (:n) RETURNING home_id"), {"n": body.name}
    ).scalar_one()
    audit.record(db, who, "home.create", str(home_id), name=body.name)
    db.commit()
    return _home(db, int(home_id))


@router.get("/{home_id}", response_model=HomeOut, summary="One home with its devices")
def get_home(home_id: RowId, db: DbConn) -> HomeOut:
    return _home(db, home_id)


@router.patch("/{home_id}", response_model=HomeOut, summary="Rename a home")
def update_home(home_id: RowId, body: HomeIn, db: DbConn, who: CurrentUser) -> HomeOut:
    _home(db, home_id)
    db.execute(
        text("UPDATE homes SET name = :n WHERE home_id = :h"), {"n": body.name, "h": home_id}
    )
    audit.record(db, who, "home.update", str(home_id), name=body.name)
    db.commit()
    return _home(db, home_id)


@router.delete(
    "/{home_id}",
    status_code=204,
    summary="Delete a home",
    description="Its devices stay (without a home) with all their data; its people lose access.",
)
def delete_home(home_id: RowId, db: DbConn, who: CurrentUser) -> None:
    _home(db, home_id)
    db.execute(text("DELETE FROM homes WHERE home_id = :h"), {"h": home_id})
    audit.record(db, who, "home.delete", str(home_id))
    db.commit()
