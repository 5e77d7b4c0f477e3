"""Dependencies shared by the routes (FastAPI's ``Depends``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection

from collector.db.capabilities import Capabilities
from collector.ingest.pipeline import IngestPipeline


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
