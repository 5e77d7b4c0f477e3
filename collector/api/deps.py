"""Dependencies shared by the routes (FastAPI's ``Depends``), including the one that authorizes
every request: :func:`authorize` runs for every route of the app (see ``app.py``) and applies
the rules in :mod:`collector.api.policy`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, text

from collector.api import policy
from collector.api.schemas import MAX_ROW_ID
from collector.auth import principal as principals
from collector.auth import tokens
from collector.auth.credentials import API_KEY_PREFIX
from collector.auth.principal import Principal
from collector.db.capabilities import Capabilities
from collector.ingest.pipeline import IngestPipeline
from shared import protocol

log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from `POST /api/v1/auth/login`, or an API key (`twk_...`). "
    "Devices use their ingest token on `POST /api/v1/ingest`.",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_db(request: Request) -> Iterator[Connection]:
    with request.app.state.engine.connect() as conn:
        yield conn


def get_pipeline(request: Request) -> IngestPipeline:
    pipeline: IngestPipeline = request.app.state.pipeline
    return pipeline


def get_capabilities(request: Request) -> Capabilities:
    caps: Capabilities = request.app.state.capabilities
    return caps


DbConn = Annotated[Connection, Depends(get_db)]
Pipeline = Annotated[IngestPipeline, Depends(get_pipeline)]
Caps = Annotated[Capabilities, Depends(get_capabilities)]

_UNAUTHENTICATED = HTTPException(
    status_code=401, detail="not authenticated", headers={"WWW-Authenticate": "Bearer"}
)
_NOT_FOUND = {"device_id": "device not found", "home_id": "home not found"}


def _principal_for(
    request: Request, db: Connection, secret: str, *, touch: bool = True
) -> Principal | None:
    """Whoever an API key or an access token whose session still runs speaks for."""
    if secret.startswith(API_KEY_PREFIX):
        return principals.load_by_api_key(db, secret, touch=touch)
    try:
        claims = tokens.decode(request.app.state.secret_key, secret)
    except tokens.InvalidToken:
        return None
    return principals.load_session(db, claims)


def _authenticate(request: Request, db: Connection, creds: BearerCredentials) -> Principal:
    if creds is None or creds.scheme.lower() != "bearer":
        raise _UNAUTHENTICATED
    who = _principal_for(request, db, creds.credentials)
    if who is None:
        raise _UNAUTHENTICATED
    return who


def reauthorize(request: Request) -> Principal | None:
    """For requests that outlive a moment (the alert stream): the principal as the database
    sees it now, from the same credentials, or ``None`` once the session ended (logout,
    password change or reset, account disabled or deleted, key revoked) or the role lost the
    route. Blocking: run it in a thread from async code."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        return None
    route = request.scope.get("route")
    rule = policy.rule_for(request.method, getattr(route, "path", None))
    with request.app.state.engine.connect() as db:
        who = _principal_for(request, db, secret.strip(), touch=False)
    if who is None or rule is None or (rule is not policy.PUBLIC and who.role not in rule):
        return None
    return who


def _check_objects(request: Request, db: Connection, who: Principal) -> None:
    """Object-level authorization: any device or home named in the path or the query must be
    one the principal may see. Answers 404 rather than 403 so ids of others stay unconfirmed."""
    if who.role is not principals.Role.homeowner:
        return
    for source in (request.path_params, request.query_params):
        for name in ("device_id", "home_id"):
            value = source.get(name)
            if value is None:
                continue
            if name == "device_id":
                if not protocol.valid_id(value):
                    raise HTTPException(status_code=404, detail=_NOT_FOUND[name])
                home = db.execute(
                    text("SELECT home_id FROM devices WHERE device_id = :d"), {"d": str(value)}
                ).first()
                visible = home is not None and who.may_see_home(home.home_id)
            else:
                visible = str(value).isdigit() and who.may_see_home(int(value))
            if not visible:
                raise HTTPException(status_code=404, detail=_NOT_FOUND[name])


def authorize(request: Request, creds: BearerCredentials) -> None:
    """Fail closed: a route without a rule in the policy answers 403 to everyone."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    rule = policy.rule_for(request.method, path)
    if rule is policy.PUBLIC:
        return  # no database round trip for health checks and device ingest
    with request.app.state.engine.connect() as db:
        who = _authenticate(request, db, creds)
        request.state.principal = who
        if rule is None:
            log.error("no authorization rule for %s %s; refusing", request.method, path)
            raise HTTPException(status_code=403, detail="forbidden")
        if who.role not in rule:
            raise HTTPException(status_code=403, detail="forbidden")
        _check_objects(request, db, who)


def get_principal(request: Request) -> Principal:
    who: Principal | None = getattr(request.state, "principal", None)
    if who is None:  # only reachable for a route marked public that asks for a user
        raise _UNAUTHENTICATED
    return who


CurrentUser = Annotated[Principal, Depends(get_principal)]


def device_identity(request: Request, creds: BearerCredentials) -> str | None:
    """The device whose ingest token came with the request; ``None`` (no token) is accepted
    only in development mode (auto-registration)."""
    pipeline: IngestPipeline = request.app.state.pipeline
    if creds is None:
        if pipeline.settings.auto_register_devices:
            return None
        raise HTTPException(
            status_code=401, detail="device token required", headers={"WWW-Authenticate": "Bearer"}
        )
    device_id = pipeline.registry.device_for_token(creds.credentials)
    if device_id is None:
        raise _UNAUTHENTICATED
    return device_id


DeviceIdentity = Annotated[str | None, Depends(device_identity)]

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A numeric id")]


def invalid_field(location: tuple[str, ...], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors (the documented schema for 422)."""
    return HTTPException(
        status_code=422, detail=[{"loc": list(location), "msg": message, "type": "value_error"}]
    )


DevicePath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="Device id")
]
SensorPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="Sensor id")
]
