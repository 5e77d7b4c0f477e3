"""Logins against a production-mode collector under attack: the owner still gets in, guesses are
counted before they are checked, a flood never runs more password hashes than the cap, proxy
headers count only from a configured proxy, and every login is audited without its password.

The stack's settings are in people.py.
"""

from __future__ import annotations

import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.collector.auth.people import PEOPLE_SETTINGS
from tests.collector.auth.stack import Stack

MAX_HASHES = PEOPLE_SETTINGS["login_max_concurrent_hashes"]
FREE = PEOPLE_SETTINGS["login_free_failures"]
ADDRESS_FREE = PEOPLE_SETTINGS["login_address_free_failures"]


@pytest.fixture
def stack(people_stack: Stack) -> Stack:
    return people_stack


def login(
    stack: Stack,
    username: str,
    password: str,
    address: str | None = None,
    http: httpx.Client | None = None,
) -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    body = {"username": username, "password": password}
    if http is not None:
        return http.post("/api/v1/auth/login", json=body, headers=headers)
    with httpx.Client(base_url=stack.url, timeout=60) as own:
        return own.post("/api/v1/auth/login", json=body, headers=headers)


def new_account(stack: Stack) -> tuple[str, str]:
    name, password = f"owner-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    with stack.admin() as http:
        resp = http.post(
            "/api/v1/users", json={"username": name, "password": password, "role": "homeowner"}
        )
    assert resp.status_code == 201, resp.text
    return name, password


def audit(stack: Stack) -> list[dict[str, Any]]:
    with stack.admin() as http:
        entries: list[dict[str, Any]] = http.get("/api/v1/audit", params={"limit": 1000}).json()
    return entries


def metric(stack: Stack, name: str) -> float:
    text = httpx.get(stack.url + "/metrics").text
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(values[0])


def test_the_owner_logs_in_from_home_after_an_attackers_100_guesses(stack: Stack) -> None:
    owner, password = new_account(stack)
    home = "192.0.2.10"
    assert login(stack, owner, password, home).status_code == 200  # her usual address
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        codes = Counter(
            login(stack, owner, f"guess-{i}", f"203.0.113.{i}", http).status_code
            for i in range(100)
        )
    # The free failures were checked; everything after waited (not counted, not checked).
    assert codes == {401: FREE, 429: 100 - FREE}
    assert login(stack, owner, password, home).status_code == 200
    # From an address never used before, the name's pause applies to her too, briefly.
    elsewhere = login(stack, owner, password, "192.0.2.99")
    assert elsewhere.status_code == 429
    assert 1 <= int(elsewhere.headers["Retry-After"]) <= 30


def test_forwarded_for_counts_only_from_a_trusted_proxy(stack: Stack) -> None:
    # An untrusted peer rotating X-Forwarded-For is still one address: sprayed names are
    # slowed after the address's free failures.
    untrusted = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=stack.url, timeout=60, transport=untrusted) as http:
        codes = [
            login(stack, f"sprayed-{i}", "Winter2026!", f"198.18.0.{i}", http).status_code
            for i in range(ADDRESS_FREE + 3)
        ]
    assert codes == [401] * ADDRESS_FREE + [429] * 3
    failures = [e for e in audit(stack) if e["action"] == "login.failure"]
    addresses = {e["detail"]["address"] for e in failures}
    assert "127.0.0.2" in addresses and not any(a.startswith("198.18.") for a in addresses)
    # Through the trusted proxy the named client is the address.
    assert login(stack, "nobody-here", "x" * 12, "198.51.100.77").status_code == 401
    latest = next(e for e in audit(stack) if e["action"] == "login.failure")
    assert latest["detail"]["address"] == "198.51.100.77"


def test_concurrent_guesses_are_counted_before_they_are_checked(stack: Stack) -> None:
    victim, _ = new_account(stack)
    with ThreadPoolExecutor(40) as pool:
        codes = Counter(
            pool.map(
                lambda i: login(stack, victim, f"guess-{i}", f"203.0.114.{i}").status_code,
                range(40),
            )
        )
    assert set(codes) <= {401, 429, 503}
    assert codes[401] <= FREE  # never more checked than the free failures
    assert metric(stack, "thermowatch_login_hashes_peak") <= MAX_HASHES


def test_a_login_flood_runs_at_most_the_cap_of_hashes_and_sheds_the_rest(stack: Stack) -> None:
    # Forty different names from forty addresses: the throttle lets each through, so only the
    # hash cap and its short queue stand between the flood and the collector's memory.
    with ThreadPoolExecutor(40) as pool:
        responses = list(
            pool.map(lambda i: login(stack, f"flood-{i}", "x" * 12, f"198.51.101.{i}"), range(40))
        )
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {401, 503} and codes[503] > 0
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 503)
    assert 1 <= metric(stack, "thermowatch_login_hashes_peak") <= MAX_HASHES
    # The collector is still there for everyone else.
    with stack.admin() as http:
        assert http.get("/api/v1/devices").status_code == 200


def test_logins_are_audited_without_what_was_typed(stack: Stack) -> None:
    owner, password = new_account(stack)
    assert login(stack, owner, password, "192.0.2.50").status_code == 200
    wrong = "Wrong-Password-" + secrets.token_hex(4)
    assert login(stack, owner, wrong, "192.0.2.51").status_code == 401
    typed_as_name = "Typed-As-Name-" + secrets.token_hex(4)
    assert login(stack, typed_as_name, password, "192.0.2.52").status_code == 401
    entries = audit(stack)
    mine = [e for e in entries if e["target"] == owner and e["action"].startswith("login.")]
    assert {(e["action"], e["detail"]["address"]) for e in mine} >= {
        ("login.success", "192.0.2.50"),
        ("login.failure", "192.0.2.51"),
    }
    failure = next(e for e in mine if e["action"] == "login.failure")
    assert failure["detail"]["reason"] == "wrong password" and failure["actor"] == owner
    unknown = next(e for e in entries if e["detail"].get("address") == "192.0.2.52")
    assert unknown["actor"] == "(unknown user)" and unknown["target"] is None
    dump = str(entries)
    assert password not in dump and wrong not in dump and typed_as_name not in dump
