"""Fixtures for the alert tests: a migrated database emptied between tests, and helpers that
build committed work the way the group-commit writer hands it to its listeners."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from collector.config import Settings
from collector.db import migrate

_TABLES = (
    "alert_outbox, notify_targets, alert_history, alerts, alert_state, alert_rules, "
    "device_presence, sensors, devices, device_events, readings"
)


@pytest.fixture(scope="session")
def alerts_database_url(database_url: str) -> str:
    migrate.upgrade(Settings(database_url=database_url))
    return database_url


@pytest.fixture
def db(alerts_database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a migrated database with empty alert and device tables."""
    with psycopg.connect(alerts_database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
        yield conn
