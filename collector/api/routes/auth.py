"""Logging in, one's own account, and API keys for automation."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import text

from collector.api.deps import CurrentUser, DbConn, RowId
from collector.api.routes.users import user_out
from collector.api.schemas import (
    AccessToken,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    LoginRequest,
    SelfUpdate,
    UserOut,
)
from collector.auth import audit, hashing, ratelimit, tokens, users
from collector.auth.credentials import new_api_key

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_KEY_COLUMNS = "key_id, name, prefix, created_at, last_used, revoked_at"


@router.post(
    "/login",
    response_model=AccessToken,
    summary="Exchange a user name and password for a short-lived access token",
    description="Send the token as `Authorization: Bearer <token>`. After repeated failures "
    "for a user name or from an address, logins are refused for a while (429).",
    responses={
        401: {"description": "Wrong user name or password"},
        429: {"description": "Too many failures"},
    },
)
def login(body: LoginRequest, db: DbConn, request: Request) -> AccessToken:
    settings = request.app.state.settings
    address = request.client.host if request.client else "unknown"
    window = settings.login_failure_window_s
    if ratelimit.blocked(
        db,
        username=body.username,
        address=address,
        limit=settings.login_max_failures,
        window_s=window,
    ):
        raise HTTPException(
            status_code=429, detail="too many failed logins", headers={"Retry-After": str(window)}
        )
    user_id = users.authenticate(db, body.username, body.password)
    if user_id is None:
        ratelimit.record_failure(db, username=body.username, address=address)
        raise HTTPException(
            status_code=401,
            detail="wrong user name or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    ratelimit.clear(db, username=body.username, window_s=window)
    ttl = settings.access_token_ttl_s
    return AccessToken(
        access_token=tokens.issue(request.app.state.secret_key, user_id, ttl), expires_in=ttl
    )


@router.get("/me", response_model=UserOut, summary="Your own account")
def me(db: DbConn, who: CurrentUser) -> UserOut:
    return user_out(db, who.user_id)


@router.patch(
    "/me",
    response_model=UserOut,
    summary="Change your own password",
    description="Only the password can be changed here; role and homes are set by admins.",
)
def update_me(body: SelfUpdate, db: DbConn, who: CurrentUser) -> UserOut:
    if users.authenticate(db, who.username, body.current_password) is None:
        raise HTTPException(status_code=403, detail="current password is wrong")
    db.execute(
        text("UPDATE users SET password_hash = :h WHERE user_id = :u"),
        {"h": hashing.hash_password(body.new_password), "u": who.user_id},
    )
    audit.record(db, who, "user.password", who.username)
    db.commit()
    return user_out(db, who.user_id)


@router.get("/api-keys", response_model=list[ApiKeyOut], summary="Your API keys")
def list_keys(db: DbConn, who: CurrentUser) -> list[ApiKeyOut]:
    rows = db.execute(
        text(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE user_id = :u ORDER BY key_id"),
        {"u": who.user_id},
    ).mappings()
    return [ApiKeyOut(**r) for r in rows]


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    summary="Create an API key for automation",
    description="The key acts with your role and homes. It is shown only in this response; "
    "only its hash is stored. Send it as `Authorization: Bearer twk_...`.",
)
def create_key(body: ApiKeyCreate, db: DbConn, who: CurrentUser) -> ApiKeyCreated:
    key, prefix, key_hash = new_api_key()
    row = (
        db.execute(
            text(
                "INSERT INTO api_keys (user_id, name, prefix, key_hash) VALUES (:u, :n, :p, :h) "
                f"RETURNING {_KEY_COLUMNS}"
            ),
            {"u": who.user_id, "n": body.name, "p": prefix, "h": key_hash},
        )
        .mappings()
        .one()
    )
    audit.record(db, who, "api_key.create", prefix, name=body.name)
    db.commit()
    return ApiKeyCreated(**row, key=key)


@router.delete(
    "/api-keys/{key_id}",
    status_code=204,
    summary="Revoke one of your API keys",
    responses={404: {"description": "No such key of yours"}},
)
def revoke_key(key_id: RowId, db: DbConn, who: CurrentUser) -> None:
    row = db.execute(
        text(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE key_id = :k AND user_id = :u RETURNING prefix"
        ),
        {"k": key_id, "u": who.user_id},
    ).first()
    if row is None:
        raise HTTPException(status_code=404, detail="API key not found")
    audit.record(db, who, "api_key.revoke", row.prefix)
    db.commit()
