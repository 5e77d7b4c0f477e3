"""Logging in and out, one's own account, and API keys for automation."""

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
    ErrorOut,
    LoginRequest,
    SelfUpdate,
    UserOut,
)
from collector.auth import audit, hashing, sessions, users
from collector.auth.credentials import new_api_key
from collector.auth.login import Busy, LoginService, Throttled, WrongCredentials, retry_after

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_KEY_COLUMNS = "key_id, name, prefix, created_at, last_used, revoked_at"


@router.post(
    "/login",
    response_model=AccessToken,
    summary="Exchange a user name and password for a short-lived access token",
    description="Send the token as `Authorization: Bearer <token>`. After repeated failures "
    "for a user name or from an address, each further attempt must wait a little longer (at "
    "most `THERMOWATCH_LOGIN_DELAY_MAX_S`); attempts during the wait get 429 with "
    "`Retry-After` and do not count. When too many passwords are being checked at once the "
    "answer is 503 with `Retry-After`.",
    responses={
        401: {"description": "Wrong user name or password"},
        429: {"description": "Wait `Retry-After` seconds after recent failures"},
        503: {"model": ErrorOut, "description": "Too many logins at once; retry shortly"},
    },
)
def login(body: LoginRequest, request: Request) -> AccessToken:
    service: LoginService = request.app.state.login
    # The peer, or the client a trusted proxy names (THERMOWATCH_TRUSTED_PROXIES, applied by
    # the server before the request gets here).
    address = request.client.host if request.client else "unknown"
    try:
        session = service.login(body.username, body.password, address=address)
    except Throttled as exc:
        raise HTTPException(
            status_code=429,
            detail="too many failed logins; wait and try again",
            headers={"Retry-After": retry_after(exc.retry_after_s)},
        ) from None
    except Busy as exc:
        raise HTTPException(
            status_code=503,
            detail="too many logins at once; try again shortly",
            headers={"Retry-After": retry_after(exc.retry_after_s)},
        ) from None
    except WrongCredentials:
        raise HTTPException(
            status_code=401,
            detail="wrong user name or password",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    return AccessToken(access_token=session.access_token, expires_in=session.expires_in)


@router.post(
    "/logout",
    status_code=204,
    summary="End this session, or every session of yours",
    description="Revokes the access token sent with this request. With `everywhere=true`, "
    "ends every access token of yours, on every device (API keys stay: revoke those one by "
    "one). An API key cannot log out; revoke it with `DELETE /api/v1/auth/api-keys/{id}`.",
    responses={409: {"description": "Sent with an API key"}},
)
def logout(db: DbConn, who: CurrentUser, everywhere: bool = False) -> None:
    if who.token is None:
        raise HTTPException(
            status_code=409, detail="an API key is revoked, not logged out (DELETE api-keys)"
        )
    sessions.revoke(db, who.token)
    if everywhere:
        sessions.end_all(db, who.user_id)
    audit.record(db, who, "logout", who.username, everywhere=everywhere)
    db.commit()


@router.get("/me", response_model=UserOut, summary="Your own account")
def me(db: DbConn, who: CurrentUser) -> UserOut:
    return user_out(db, who.user_id)


@router.patch(
    "/me",
    response_model=UserOut,
    summary="Change your own password",
    description="Only the password can be changed here; role and homes are set by admins. "
    "Every session of yours ends, this one too: log in again with the new password.",
    responses={503: {"model": ErrorOut, "description": "Too many logins at once"}},
)
def update_me(body: SelfUpdate, request: Request, db: DbConn, who: CurrentUser) -> UserOut:
    service: LoginService = request.app.state.login
    try:
        # The same cap as logins: this is a password check too.
        with service.hashes.slot():
            right = users.authenticate(db, who.username, body.current_password) is not None
    except Busy as exc:
        raise HTTPException(
            status_code=503,
            detail="too many logins at once; try again shortly",
            headers={"Retry-After": retry_after(exc.retry_after_s)},
        ) from None
    if not right:
        raise HTTPException(status_code=403, detail="current password is wrong")
    # The new hash moves the session generation on (a trigger): older tokens stop working.
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
