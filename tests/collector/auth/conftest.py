"""One secured stack (broker + collector + database) shared by the auth tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.collector.auth.stack import Stack, secured_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with secured_stack(tmp_path_factory.mktemp("secured")) as s:
        yield s
