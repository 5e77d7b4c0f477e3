"""The alert tests' migrated database (emptied per test), and a stand-in for DNS.

Name resolution is the one thing a test cannot make real here (no zone of ours to change), and
the checks under test are about what a name resolves to over time (DNS rebinding); so tests
answer for ``collector.notify.destinations.getaddrinfo`` and everything after it is real.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collector.notify import destinations
from tests.collector.alerts.conftest import alerts_database_url, db  # noqa: F401 (fixtures)


class Dns:
    """Answers names from a table. Each answer is one address or a tuple of them (all returned
    by one lookup); several answers are handed out one per lookup, the last one repeating (a
    record that changes between the save-time and the send-time lookup)."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, ...]]] = {}
        self.lookups: list[str] = []

    def set(self, name: str, *answers: str | tuple[str, ...]) -> None:
        self.records[name] = [(a,) if isinstance(a, str) else a for a in answers]

    def __call__(self, host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        self.lookups.append(host)
        answers = self.records.get(host)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        infos = []
        for address in addresses:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return infos


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dns]:
    resolver = Dns()
    real: Callable[..., Any] = socket.getaddrinfo

    def lookup(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        # Literal addresses resolve to themselves, as they do for the real resolver.
        if host in resolver.records:
            return resolver(host, port, *args, **kwargs)
        try:
            destinations.parse_address(host)
        except ValueError:
            return resolver(host, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(destinations, "getaddrinfo", lookup)
    yield resolver
