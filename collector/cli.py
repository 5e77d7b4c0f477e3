"""``thermowatch collector ...``: run the cloud service and manage its database."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer

from collector.config import Settings
from collector.db.connection import DatabaseUnavailable

app = typer.Typer(no_args_is_help=True)


def _logging(level: str) -> None:
    # One line per event without timestamps: journald and container runtimes add their own.
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


@app.command()
def serve(
    log_level: str = typer.Option("info", help="debug, info, warning or error"),
    db_wait_s: float = typer.Option(30.0, help="How long to wait for the database at start-up"),
) -> None:
    """Ingest over MQTT, CoAP and HTTP, and serve the API (settings from THERMOWATCH_* vars)."""
    _logging(log_level)
    from collector import service

    try:
        asyncio.run(service.run(Settings(), db_wait_s=db_wait_s))
    except DatabaseUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


@app.command()
def migrate(db_wait_s: float = typer.Option(0.0, help="How long to wait for the database")) -> None:
    """Create or upgrade the database schema, then exit."""
    _logging("info")
    from collector.db import migrate as migrations

    try:
        caps = migrations.upgrade(Settings(), wait_s=db_wait_s)
    except DatabaseUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    typer.echo(f"schema up to date (timescaledb license: {caps.license})")
