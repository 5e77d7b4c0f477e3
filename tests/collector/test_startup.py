"""Start-up fails fast with a message a person can act on when the database is not usable."""

from __future__ import annotations

import os
import secrets
import subprocess

import psycopg

from collector.db.capabilities import detect
from tests.support.net import free_port
from tests.support.postgres_server import PrivatePostgres
from tests.support.processes import REPO, thermowatch_command


def run_collector(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "THERMOWATCH_DATABASE_URL": database_url,
        "THERMOWATCH_SECRET_KEY": secrets.token_urlsafe(32),
        "THERMOWATCH_MQTT_ENABLED": "false",
        "THERMOWATCH_COAP_ENABLED": "false",
        "THERMOWATCH_HTTP_PORT": str(free_port()),
    }
    return subprocess.run(
        thermowatch_command("collector", "serve", "--db-wait-s", "1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_unreachable_database_is_a_clear_startup_error() -> None:
    result = run_collector(f"postgresql://postgres@127.0.0.1:{free_port()}/thermowatch")
    assert result.returncode == 2
    assert "cannot connect to PostgreSQL at 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_timescaledb_is_a_clear_startup_error() -> None:
    pg = PrivatePostgres(preload_timescaledb=False).init().start()
    try:
        url = pg.create_database()
        result = run_collector(url)
        assert result.returncode == 2
        assert "timescaledb" in result.stderr and "shared_preload_libraries" in result.stderr
        with psycopg.connect(url) as conn:  # nothing half-created
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
        assert tables == (0,)
    finally:
        pg.destroy()


def test_migrate_command_is_idempotent(fresh_database_url: str) -> None:
    env = {**os.environ, "THERMOWATCH_DATABASE_URL": fresh_database_url}
    with psycopg.connect(fresh_database_url) as conn:
        edition = conn.execute("SHOW timescaledb.license").fetchone()
    assert edition is not None
    for _ in range(2):
        result = subprocess.run(
            thermowatch_command("collector", "migrate"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        assert f"schema up to date (timescaledb license: {edition[0]})" in result.stdout
    with psycopg.connect(fresh_database_url) as conn:
        hypertables = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
        ).fetchall()
        interval = conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'readings'"
        ).fetchone()
        caps = detect(conn)
    assert hypertables == [("readings",)]
    assert interval is not None and interval[0].days == 1
    # The continuous aggregates exist exactly when the edition has them.
    assert caps.license == edition[0]
    assert caps.continuous_aggregates == (edition[0] == "timescale")
