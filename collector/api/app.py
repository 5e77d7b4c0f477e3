"""The FastAPI application: routers, the shared state they use, and authorization for all of
them (one app-wide dependency; the rules are in :mod:`collector.api.policy`)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from sqlalchemy import Engine

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
from collector.db.capabilities import Capabilities
from collector.ingest.pipeline import IngestPipeline


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
    )
    app.state.engine = engine
    app.state.pipeline = pipeline
    app.state.capabilities = capabilities
    app.state.secret_key = secret_key
    state.setdefault("settings", pipeline.settings)
    for key, value in state.items():
        setattr(app.state, key, value)
    for router in (health, ingest, auth, devices, readings, homes, users, audit, alerts):
        app.include_router(router.router)
    return app
