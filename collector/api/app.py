"""The FastAPI application: routers, the shared state they use, and authorization for all of
them (one app-wide dependency; the rules are in :mod:`collector.api.policy`)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine

from collector.api.body_limit import BodyLimitMiddleware
from collector.api.deps import authorize
from collector.api.routes import (
    alerts,
    audit,
    auth,
    devices,
    health,
    homes,
    ingest,
    readings,
    users,
)
from collector.api.schemas import ErrorOut, json_safe
from collector.auth.login import LoginService
from collector.db.capabilities import Capabilities
from collector.ingest.pipeline import IngestPipeline
from shared import protocol as p

# Documented on every route: authorization runs everywhere, so any route may answer these.
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not authenticated (missing, invalid or expired)"},
    403: {"model": ErrorOut, "description": "Authenticated, but not allowed"},
    404: {"model": ErrorOut, "description": "Not found, or not yours"},
    409: {"model": ErrorOut, "description": "Conflicts with the current state"},
    429: {"model": ErrorOut, "description": "Too many failed logins: wait `Retry-After`"},
}


async def _http_error(request: Request, exc: Exception) -> Response:
    """A 422 raised by a route with a plain message gets the documented shape of FastAPI's
    own validation errors, so clients parse every 422 the same way."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 422 and isinstance(exc.detail, str):
        detail = [{"loc": [], "msg": exc.detail, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422, headers=exc.headers)
    return await http_exception_handler(request, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, with what the client sent made safe to send back: JSON text holds no lone
    surrogates and no NaN or Infinity, which a 422 echoing them would otherwise fail on (500)."""
    assert isinstance(exc, RequestValidationError)
    detail = json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(
    *,
    engine: Engine,
    pipeline: IngestPipeline,
    capabilities: Capabilities,
    secret_key: str,
    **state: Any,
) -> FastAPI:
    """``secret_key`` signs access tokens; ``state`` may hold ``settings``, ``writer``, ``mqtt``,
    ``registry`` and ``broker_sync`` (each optional except ``settings``)."""
    app = FastAPI(
        title="Thermowatch collector",
        version="1",
        description="Ingest, storage and queries of temperature readings; homes, users and "
        "device provisioning. Authenticate with `POST /api/v1/auth/login` and send the token "
        "(or an API key) as `Authorization: Bearer ...`.",
        dependencies=[Depends(authorize)],
        responses=_ERRORS,
    )
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.state.engine = engine
    app.state.pipeline = pipeline
    app.state.capabilities = capabilities
    app.state.secret_key = secret_key
    state.setdefault("settings", pipeline.settings)
    for key, value in state.items():
        setattr(app.state, key, value)
    app.state.login = LoginService.from_settings(secret_key, state["settings"])
    for router in (health, ingest, auth, devices, readings, homes, users, audit, alerts):
        app.include_router(router.router)
    settings = state["settings"]
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.http_max_body_bytes,
        limits={p.HTTP_INGEST_PATH: settings.max_payload_bytes},
    )
    return app
