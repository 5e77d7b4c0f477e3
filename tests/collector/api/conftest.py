"""One secured stack shared by the API tests, with two homes and their owners."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.collector.auth.stack import Stack, secured_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with secured_stack(tmp_path_factory.mktemp("secured-api")) as s:
        yield s


@dataclass
class TwoHomes:
    home_a: int
    home_b: int
    owner_a: str  # access tokens
    owner_b: str
    technician: str


@pytest.fixture(scope="session")
def homes(stack: Stack) -> TwoHomes:
    home_a, home_b = stack.new_home("Home A"), stack.new_home("Home B")
    stack.provision("dev-a", home_a, sensors=[{"sensor_id": "s1", "label": "Freezer"}])
    stack.provision("dev-b", home_b, sensors=[{"sensor_id": "s1", "label": "Cellar"}])
    _, owner_a = stack.new_user("homeowner", [home_a])
    _, owner_b = stack.new_user("homeowner", [home_b])
    _, technician = stack.new_user("technician")
    return TwoHomes(home_a, home_b, owner_a, owner_b, technician)
