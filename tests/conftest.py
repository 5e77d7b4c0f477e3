"""Session fixtures: a real TimescaleDB database and a real Mosquitto broker the tests control."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import MosquittoBroker
from tests.support.database import create_database, drop_database

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def micropython_bin() -> str:
    """The MicroPython unix port built by `make setup` (tests need the real runtime)."""
    path = os.environ.get("THERMOWATCH_MICROPYTHON", str(REPO / ".cache/micropython/micropython"))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"MicroPython unix port not found at {path}: run `make setup`")
    return path


@pytest.fixture(scope="session")
def mpy_cross_bin() -> str:
    path = os.environ.get("THERMOWATCH_MPY_CROSS", str(REPO / ".cache/micropython/mpy-cross"))
    if not os.path.isfile(path):
        found = shutil.which("mpy-cross")
        if not found:
            pytest.fail("mpy-cross not found: run `make setup`")
        path = found
    return path


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database for the whole session with the timescaledb extension, dropped at the end."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    """A database of its own for one test (for tests that count rows or restart things)."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A private anonymous Mosquitto on a free port for the session."""
    b = MosquittoBroker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A broker for one test, which it may stop, kill and restart."""
    b = MosquittoBroker(tmp_path / "mosquitto").start()
    yield b
    b.stop()
