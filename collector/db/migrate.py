"""Bring the schema up to date with Alembic, and apply storage policies from the settings."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config

from collector.config import Settings
from collector.db.capabilities import Capabilities, detect
from collector.db.connection import check_database, connect, sqlalchemy_url

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, *, wait_s: float = 0.0) -> Capabilities:
    """Check the database, run migrations to head, apply policies; return what it can do."""
    check_database(settings.database_url, wait_s=wait_s)
    cfg = alembic_config(settings.database_url)
    # Migrations that encrypt stored secrets need the server secret.
    cfg.attributes["secret_key"] = (
        settings.secret_key.get_secret_value() if settings.secret_key else None
    )
    # "heads": independent features (auth, alerts) add their own migration branches.
    command.upgrade(cfg, "heads")
    with connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT set_chunk_time_interval('readings', %s * interval '1 day')",
            (settings.chunk_interval_days,),
        )
        caps = detect(conn)
        if caps.full_edition:
            _apply_policies(conn, settings)
    log.info("database ready: timescaledb license %s", caps.license)
    return caps


def _apply_policies(conn: psycopg.Connection, settings: Settings) -> None:
    """Compression and retention exist only in the Timescale-licensed edition."""
    conn.execute(
        "ALTER TABLE readings SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'device_id, sensor_id', "
        "timescaledb.compress_orderby = 'time DESC')"
    )
    conn.execute("SELECT remove_compression_policy('readings', if_exists => true)")
    conn.execute(
        "SELECT add_compression_policy('readings', %s * interval '1 day')",
        (settings.compress_after_days,),
    )
    conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
    if settings.retention_days > 0:
        conn.execute(
            "SELECT add_retention_policy('readings', %s * interval '1 day')",
            (settings.retention_days,),
        )
