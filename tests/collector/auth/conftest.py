"""One secured stack (broker + collector + database) shared by the auth tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.collector.auth.people import PEOPLE_SETTINGS
from tests.collector.auth.stack import Stack, secured_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with secured_stack(tmp_path_factory.mktemp("secured")) as s:
        yield s


# Logins and sessions (test_login.py, test_sessions.py): settings in people.py.
@pytest.fixture(scope="session")
def people_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with secured_stack(tmp_path_factory.mktemp("people"), **PEOPLE_SETTINGS) as s:
        yield s
