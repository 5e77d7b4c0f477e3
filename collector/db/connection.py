"""Connection helpers: one place that turns the configured URL into what each library wants and
explains clearly why the database cannot be used."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import Engine, create_engine


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or lacks what Thermowatch needs; the message says which."""


def psycopg_url(url: str) -> str:
    """A libpq URL (``postgresql://``) from a SQLAlchemy one (``postgresql+psycopg://``)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    """A SQLAlchemy URL that uses psycopg 3."""
    return "postgresql+psycopg://" + psycopg_url(url)[len("postgresql://") :]


# PostgreSQL's JIT compiler spends hundreds of milliseconds compiling the expressions of an
# aggregate over many chunks, far longer than the API's queries take to run.
API_SESSION_OPTIONS = "-c jit=off"


def make_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, pool_timeout_s: float = 30.0
) -> Engine:
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
        connect_args={"options": API_SESSION_OPTIONS},
    )


def connect(url: str, *, autocommit: bool = False, timeout_s: int = 5) -> psycopg.Connection:
    return psycopg.connect(psycopg_url(url), autocommit=autocommit, connect_timeout=timeout_s)


def check_database(url: str, *, wait_s: float = 0.0) -> str:
    """Make sure the database answers and has TimescaleDB; return the extension's license.

    Waits up to ``wait_s`` for the server (containers start in any order), then raises
    :class:`DatabaseUnavailable` with a message a person can act on.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with connect(url, autocommit=True) as conn:
                return _ensure_timescaledb(conn)
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                safe = psycopg_url(url).split("@")[-1]
                raise DatabaseUnavailable(
                    f"cannot connect to PostgreSQL at {safe}: {str(exc).strip()}"
                ) from None
            time.sleep(0.5)


def _ensure_timescaledb(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    if row is None:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        if available is None:
            raise DatabaseUnavailable(
                "the TimescaleDB extension is not installed on this PostgreSQL server "
                "(install it and add 'timescaledb' to shared_preload_libraries; `make setup` "
                "does both on Debian)"
            )
        try:
            conn.execute("SET client_min_messages = warning")
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"the timescaledb extension is available but could not be created: {exc}".strip()
                + " (is it in shared_preload_libraries, and may this user create extensions?)"
            ) from None
    license_row = conn.execute("SHOW timescaledb.license").fetchone()
    return str(license_row[0]) if license_row else "apache"
