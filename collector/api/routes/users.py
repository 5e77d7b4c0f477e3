"""Users (admins only): create, change role, homes, password or disabled state, delete."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from collector.api.deps import CurrentUser, DbConn, RowId, invalid_field
from collector.api.schemas import UserCreate, UserOut, UserUpdate
from collector.auth import audit, hashing, users

router = APIRouter(prefix="/api/v1/users", tags=["users"])


def user_out(db: Connection, user_id: int) -> UserOut:
    row = (
        db.execute(
            text(
                "SELECT u.user_id, u.username, u.role, u.disabled, u.created_at, "
                "  coalesce(array_agg(h.home_id ORDER BY h.home_id) "
                "           FILTER (WHERE h.home_id IS NOT NULL), '{}') AS home_ids "
                "FROM users u LEFT JOIN user_homes h USING (user_id) "
                "WHERE u.user_id = :u GROUP BY u.user_id"
            ),
            {"u": user_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise HTTPException(status_code=404, detail="user not found")
    return UserOut(**row)


def _check_homes(db: Connection, home_ids: list[int]) -> None:
    if not home_ids:
        return
    found = db.execute(
        text("SELECT count(*) FROM homes WHERE home_id = ANY(:h)"), {"h": sorted(set(home_ids))}
    ).scalar_one()
    if found != len(set(home_ids)):
        raise invalid_field(("body", "home_ids"), "home not found")


@router.get("", response_model=list[UserOut], summary="All users")
def list_users(db: DbConn) -> list[UserOut]:
    ids = db.execute(text("SELECT user_id FROM users ORDER BY user_id")).scalars().all()
    return [user_out(db, i) for i in ids]


@router.post(
    "",
    response_model=UserOut,
    status_code=201,
    summary="Create a user",
    responses={409: {"description": "The user name is taken"}},
)
def create_user(body: UserCreate, db: DbConn, who: CurrentUser) -> UserOut:
    _check_homes(db, body.home_ids)
    try:
        user_id = users.create(
            db,
            username=body.username,
            password=body.password,
            role=body.role,
            home_ids=body.home_ids,
        )
    except IntegrityError:
        db.rollback()
        raise HTTPException(status_code=409, detail="user name taken") from None
    audit.record(db, who, "user.create", body.username, role=body.role, home_ids=body.home_ids)
    db.commit()
    return user_out(db, user_id)


@router.get("/{user_id}", response_model=UserOut, summary="One user")
def get_user(user_id: RowId, db: DbConn) -> UserOut:
    return user_out(db, user_id)


@router.patch(
    "/{user_id}",
    response_model=UserOut,
    summary="Change a user's role, homes, password or disabled state",
)
def update_user(user_id: RowId, body: UserUpdate, db: DbConn, who: CurrentUser) -> UserOut:
    target = user_out(db, user_id)
    if user_id == who.user_id and (body.role not in (None, target.role) or body.disabled):
        # An admin cannot lock themselves out; another admin has to do it.
        raise HTTPException(status_code=409, detail="cannot demote or disable yourself")
    if body.role is not None:
        db.execute(
            text("UPDATE users SET role = :r WHERE user_id = :u"), {"r": body.role, "u": user_id}
        )
    if body.disabled is not None:
        db.execute(
            text("UPDATE users SET disabled = :d WHERE user_id = :u"),
            {"d": body.disabled, "u": user_id},
        )
    if body.password is not None:
        db.execute(
            text("UPDATE users SET password_hash = :h WHERE user_id = :u"),
            {"h": hashing.hash_password(body.password), "u": user_id},
        )
    if body.home_ids is not None:
        _check_homes(db, body.home_ids)
        users.set_homes(db, user_id=user_id, home_ids=body.home_ids)
    changed = sorted(body.model_fields_set)
    audit.record(db, who, "user.update", target.username, fields=changed)
    db.commit()
    return user_out(db, user_id)


@router.delete("/{user_id}", status_code=204, summary="Delete a user (and their API keys)")
def delete_user(user_id: RowId, db: DbConn, who: CurrentUser) -> None:
    target = user_out(db, user_id)
    if user_id == who.user_id:
        raise HTTPException(status_code=409, detail="cannot delete yourself")
    db.execute(text("DELETE FROM users WHERE user_id = :u"), {"u": user_id})
    audit.record(db, who, "user.delete", target.username)
    db.commit()
