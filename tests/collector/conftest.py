"""Fixtures for collector tests: a real collector process on a fresh database and the broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.broker import MosquittoBroker
from tests.support.processes import CollectorProcess, start_collector


@pytest.fixture
def collector(fresh_database_url: str, broker: MosquittoBroker) -> Iterator[CollectorProcess]:
    proc = start_collector(fresh_database_url, broker.port)
    yield proc
    proc.stop()


@pytest.fixture
def api(collector: CollectorProcess) -> Iterator[httpx.Client]:
    """The collector's HTTP API as an admin."""
    with collector.admin_client() as client:
        yield client


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def count_readings(url: str, device_id: str | None = None) -> int:
    if device_id is None:
        return int(query(url, "SELECT count(*) FROM readings")[0][0])
    return int(query(url, "SELECT count(*) FROM readings WHERE device_id = %s", (device_id,))[0][0])
