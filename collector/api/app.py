"""The FastAPI application: routers, and the shared state they use."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from collector.api.routes import devices, health, ingest, readings
from collector.db.capabilities import Capabilities
from collector.ingest.pipeline import IngestPipeline


def create_app(
    *,
    engine: Engine,
    pipeline: IngestPipeline,
    capabilities: Capabilities,
    **state: Any,
) -> FastAPI:
    app = FastAPI(
        title="Thermowatch collector",
        version="1",
        description="Ingest, storage and queries of temperature readings.",
    )
    app.state.engine = engine
    app.state.pipeline = pipeline
    app.state.capabilities = capabilities
    for key, value in state.items():
        setattr(app.state, key, value)
    app.include_router(health.router)
    app.include_router(ingest.router)
    app.include_router(devices.router)
    app.include_router(readings.router)
    return app
