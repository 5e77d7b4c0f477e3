"""Property-based run of the whole OpenAPI schema against the real collector (Schemathesis), as
an admin and as a homeowner: no 5xx, and every answer matches the documented schema. Then a
hostile pass beyond what the schema suggests: NaN and Infinity, lone surrogates, dates at the
ends of the calendar and integers past int64 in every query and path parameter and in every
field of a realistic body of every operation; each must be a 4xx (or work), never a 5xx, and
every error body must be JSON a strict parser reads."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi import checks

from tests.collector.auth.stack import Stack, secured_stack

EXAMPLES_PER_OPERATION = 4
# Not applicable here: a random id is rightly 404, and bearer tokens are checked separately.
_EXCLUDED = [checks.positive_data_acceptance, checks.ignored_auth]

# Operations that check credentials of their own (a password, a device token), not the bearer.
_OWN_CREDENTIALS = {"/api/v1/auth/login", "/api/v1/ingest"}
_LOGOUT = "/api/v1/auth/logout"
_tokens: dict[str, str] = {}
_objects: dict[str, Any] = {}


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A stack of its own: the run creates, rotates and decommissions whatever it likes.
    with secured_stack(tmp_path_factory.mktemp("fuzz")) as s:
        home = s.new_home("Fuzz home")
        _objects["home"] = home
        s.provision("fuzz-dev", home, sensors=[{"sensor_id": "s1", "label": "Fridge"}])
        s.provision("fuzz-homeless", None)
        # Log in before the fuzzing: its failed logins soon rate-limit this address.
        _tokens["admin"] = s.login("root-admin", s.admin_password)
        _, _tokens["homeowner"] = s.new_user("homeowner", [home])
        yield s


def _fuzz(stack: Stack, bearer: str) -> Counter[int]:
    """Run every operation; return how often each status code came back."""
    schema = schemathesis.openapi.from_url(stack.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {bearer}"}
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/stream"):
            continue  # Server-Sent Events never end; the alerts tests cover the stream
        if operation.path == _LOGOUT:
            continue  # it would end the run's own session (tests/collector/auth covers it)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            # The same examples on every run, so the suite's verdict does not depend on luck;
            # explore further with THERMOWATCH_FUZZ_RANDOM=1 (new examples each run).
            derandomize=not os.environ.get("THERMOWATCH_FUZZ_RANDOM"),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                base_url=stack.url, headers=headers, excluded_checks=_EXCLUDED
            )
            statuses[response.status_code] += 1
            if response.status_code == 401 and case.operation.path not in _OWN_CREDENTIALS:
                statuses[-401] += 1  # refused a valid token: counted apart

        run()
    return statuses


def test_every_operation_as_a_homeowner(fuzz_stack: Stack) -> None:
    statuses = _fuzz(fuzz_stack, _tokens["homeowner"])
    assert statuses[200] > 0 and statuses[403] > 0
    assert not any(code >= 500 for code in statuses)


# -- hostile values -------------------------------------------------------------------------------

# In JSON bodies (NaN and Infinity as the bare words lenient parsers accept, surrogates as
# \\u escapes), then as they appear in a URL (already percent-encoded: a lone surrogate is the
# bytes UTF-8 would give it, which are not valid UTF-8).
HOSTILE_JSON: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    "\ud800",
    "ok\udfffok",
    2**63,
    -(2**63) - 1,
    10**30,
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
]
HOSTILE_URL = [
    "NaN",
    "Infinity",
    "-inf",
    "%ED%A0%80",
    str(2**63),
    str(-(2**63) - 1),
    str(10**30),
    quote("0001-01-01T00:00:00+14:00"),
    quote("9999-12-31T23:59:59-14:00"),
]
# Path parameters point at objects that exist, so that a hostile value elsewhere in the request
# reaches the route's own code rather than a 404.
_PATH_BASE = {"device_id": "fuzz-dev", "sensor_id": "s1"}


def _seeds(home: int) -> dict[tuple[str, str], dict[str, Any]]:
    """Bodies the routes accept, for the operations whose bodies reach deep validation; every
    leaf of each is replaced by each hostile value in turn."""
    threshold = {"name": "fuzz", "kind": "threshold", "params": {"above_c": 8, "for_s": 0}}
    target = {
        "name": "fuzz",
        "kind": "webhook",
        "home_id": home,
        "config": {"url": "https://example.com/hook", "timeout_s": 5},
        "repeat_interval_s": 60,
        "group_wait_s": 0,
    }
    return {
        ("POST", "/api/v1/alert-rules"): {**threshold, "home_id": home},
        ("PATCH", "/api/v1/alert-rules/{rule_id}"): {"params": {"above_c": 8}, "enabled": True},
        ("POST", "/api/v1/alert-rules/backtest"): {
            "rule": threshold,
            "device_id": "fuzz-dev",
            "sensor_id": "s1",
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-02T00:00:00Z",
        },
        ("POST", "/api/v1/notify-targets"): target,
        ("PUT", "/api/v1/notify-targets/{target_id}"): target,
        ("PUT", "/api/v1/devices/{device_id}/config"): {
            "v": 1,
            "sample_period_s": 30,
            "sensors": {"s1": {"high_c": 5, "low_c": -20}},
        },
        ("POST", "/api/v1/devices"): {
            "device_id": "fuzz-new",
            "home_id": home,
            "sensors": [{"sensor_id": "s1", "label": "Freezer"}],
        },
        ("PATCH", "/api/v1/devices/{device_id}"): {"name": "Kitchen", "home_id": home},
        ("POST", "/api/v1/users"): {
            "username": "fuzzed",
            "password": "correct horse battery",
            "role": "homeowner",
            "home_ids": [home],
        },
        ("PATCH", "/api/v1/users/{user_id}"): {"home_ids": [home]},
        ("PATCH", "/api/v1/homes/{home_id}"): {"name": "Fuzz home"},
        ("POST", "/api/v1/alerts/{alert_id}/silence"): {"duration_s": 60},
        ("POST", "/api/v1/auth/login"): {"username": "fuzzed", "password": "wrong password"},
    }


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value that a hostile value can take (containers included)."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _base_bodies(operation: Any, count: int) -> list[Any]:
    """Bodies Schemathesis generates for an operation without a seed."""
    bodies: list[Any] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=count,
        derandomize=not os.environ.get("THERMOWATCH_FUZZ_RANDOM"),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def collect(case: schemathesis.Case) -> None:
        if isinstance(case.body, dict | list):
            bodies.append(case.body)

    collect()
    return bodies[:count]


def _requests(stack: Stack) -> Iterator[tuple[str, str, dict[str, str], Any]]:
    """(method, path, query, body) for every hostile variation of every operation."""
    spec = httpx.get(stack.url + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    seeds = _seeds(_objects["home"])
    explore = bool(os.environ.get("THERMOWATCH_FUZZ_RANDOM"))
    for result in schema.get_all_operations():
        operation = result.ok()
        method, path = operation.method.upper(), operation.path
        if path.endswith("/stream"):
            continue
        params = spec["paths"][path][operation.method].get("parameters", [])
        base_path = {
            p["name"]: _PATH_BASE.get(
                p["name"], str(_objects["home"]) if p["name"] == "home_id" else "1"
            )
            for p in params
            if p["in"] == "path"
        }
        query_names = [p["name"] for p in params if p["in"] == "query"]

        def url(path_values: dict[str, str], path: str = path) -> str:
            return path.format(**path_values)

        for name in base_path:
            for bad in HOSTILE_URL:
                yield method, url({**base_path, name: bad}), {}, None
        for name in query_names:
            for bad in HOSTILE_URL:
                yield method, url(base_path), {name: bad}, None
        if "requestBody" not in spec["paths"][path][operation.method]:
            continue
        bodies = [seeds[(method, path)]] if (method, path) in seeds else []
        if explore or not bodies:
            bodies += _base_bodies(operation, 3 if explore else 1)
        for body in bodies:
            for place in [(), *_leaves(body)]:
                for bad in HOSTILE_JSON:
                    yield method, url(base_path), {}, _replace(body, place, bad)


def test_hostile_values_in_every_operation_are_refused_not_failed(fuzz_stack: Stack) -> None:
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {_tokens['admin']}", "Content-Type": "application/json"}
    http = httpx.Client(base_url=fuzz_stack.url, headers=headers, timeout=30)
    try:
        for method, path, query, body in _requests(fuzz_stack):
            target = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
            content = None if body is None else json.dumps(body, allow_nan=True)
            try:
                resp = http.request(method, target, content=content)
            except httpx.TransportError as exc:  # the server dropped the connection
                failures.append(f"{method} {target} {content} -> {exc!r}")
                http.close()
                http = httpx.Client(base_url=fuzz_stack.url, headers=headers, timeout=30)
                continue
            statuses[resp.status_code] += 1
            problem = resp.status_code >= 500
            if not problem and resp.headers.get("content-type", "").startswith("application/json"):
                try:  # a strict parser: no NaN, no lone surrogates
                    json.loads(resp.content.decode("utf-8"), parse_constant=_refuse)
                except ValueError:
                    problem = True
            if problem:
                failures.append(f"{method} {target} {content} -> {resp.status_code}")
            if resp.status_code >= 500:  # the server drops the connection after a 500
                http.close()
                http = httpx.Client(base_url=fuzz_stack.url, headers=headers, timeout=30)
    finally:
        http.close()
    assert statuses[422] > 0
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:60])


def _refuse(constant: str) -> None:
    raise ValueError(f"not JSON: {constant}")


def test_a_rule_of_a_device_without_a_home_is_not_a_homeowners(fuzz_stack: Stack) -> None:
    with fuzz_stack.client(_tokens["admin"]) as admin:
        resp = admin.post(
            "/api/v1/alert-rules",
            json={
                "name": "homeless",
                "kind": "threshold",
                "device_id": "fuzz-homeless",
                "params": {"above_c": 8},
            },
        )
        assert resp.status_code == 201, resp.text
        rule_id = resp.json()["id"]
        assert admin.get(f"/api/v1/alert-rules/{rule_id}").status_code == 200
    with fuzz_stack.client(_tokens["homeowner"]) as owner:
        assert owner.get(f"/api/v1/alert-rules/{rule_id}").status_code == 404
        listed = owner.get("/api/v1/alert-rules").json()
    assert rule_id not in [r["id"] for r in listed]


# Last: the admin run may delete or disable the other users. It uses an access token, not its
# API key, which the run could revoke.
def test_every_operation_as_an_admin(fuzz_stack: Stack) -> None:
    statuses = _fuzz(fuzz_stack, _tokens["admin"])
    assert statuses[200] > 0 and statuses[201] > 0
    assert statuses[-401] == 0  # the token stayed valid for the whole run
    assert not any(code >= 500 for code in statuses)
