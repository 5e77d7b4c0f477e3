"""``thermowatch collector ...``: run the cloud service and manage its database."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer
from sqlalchemy import text

from collector.auth.tokens import MissingSecretKey
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
    except (DatabaseUnavailable, MissingSecretKey) as exc:
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


@app.command("generate-secret")
def generate_secret() -> None:
    """Print a new random value for THERMOWATCH_SECRET_KEY (it signs access tokens)."""
    import secrets

    typer.echo(secrets.token_urlsafe(48))


@app.command("create-admin")
def create_admin(
    username: str = typer.Option(..., help="The admin's user name"),
    password: str = typer.Option(
        ...,
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="Asked for when not given (never put it on a shared command line)",
    ),
    api_key: str | None = typer.Option(
        None, help="Also create an API key with this name and print it (shown once)"
    ),
) -> None:
    """Create an admin user: the first account of a new installation (there is no default)."""
    from sqlalchemy.exc import IntegrityError

    from collector.auth import audit, users
    from collector.auth.credentials import new_api_key
    from collector.auth.principal import Role
    from collector.db import migrate as migrations
    from collector.db.connection import make_engine

    _logging("warning")
    settings = Settings()
    try:
        migrations.upgrade(settings)
    except DatabaseUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            user_id = users.create(conn, username=username, password=password, role=Role.admin)
            audit.record(conn, "command line", "user.create", username, role=Role.admin)
            key = None
            if api_key:
                key, prefix, key_hash = new_api_key()
                conn.execute(
                    text(
                        "INSERT INTO api_keys (user_id, name, prefix, key_hash) "
                        "VALUES (:u, :n, :p, :h)"
                    ),
                    {"u": user_id, "n": api_key, "p": prefix, "h": key_hash},
                )
            conn.commit()
    except users.WeakPassword as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except IntegrityError:
        typer.echo(f"error: user {username!r} exists", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    typer.echo(f"admin {username!r} created")
    if key:
        typer.echo(f"API key (shown once): {key}")


@app.command("sync-broker")
def sync_broker() -> None:
    """Make the broker's accounts and ACLs match the database, then exit: the password and ACL
    files (run it before the broker starts, e.g. as an init container) or the dynamic-security
    plugin. `serve` keeps them in sync afterwards."""
    _logging("warning")
    from collector.broker.backend import make_backend
    from collector.db import migrate as migrations
    from collector.db.connection import make_engine

    settings = Settings()
    try:
        migrations.upgrade(settings, wait_s=30)
    except DatabaseUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    engine = make_engine(settings.database_url, pool_size=1)
    backend = make_backend(settings, engine)
    if backend is None:
        typer.echo(
            "error: no broker to manage: set THERMOWATCH_BROKER_PASSWORD_FILE and _ACL_FILE, "
            "or THERMOWATCH_BROKER_BACKEND=dynsec",
            err=True,
        )
        sys.exit(2)
    try:
        backend.sync()
    finally:
        backend.stop()
        engine.dispose()
    typer.echo(f"broker in sync ({settings.broker_backend})")


@app.command("tls-init")
def tls_init(
    out_dir: str = typer.Option("tls", help="Folder for ca.crt, ca.key, server.crt, server.key"),
    host: list[str] = typer.Option(
        ...,
        help="A name or address clients connect to (the certificate is valid for each); repeat",
    ),
    renew_ca: bool = typer.Option(
        False, help="Make a new CA too (every device then needs a new bundle)"
    ),
) -> None:
    """Create the installation's CA (kept if it exists) and a server certificate for the broker
    and the API. Devices get the CA in their provisioning bundles."""
    from pathlib import Path

    from collector import tls

    try:
        files = tls.init(Path(out_dir), host, renew_ca=renew_ca)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    typer.echo(f"CA: {files.ca_cert}\ncertificate: {files.server_cert}\nkey: {files.server_key}")
