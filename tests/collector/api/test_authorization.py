"""Object- and function-level authorization against the real collector: homeowners see only
their homes, never admin functions; bad tokens are 401; no mass assignment."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from fastapi.routing import APIRoute

from collector.api import policy
from tests.collector.api.conftest import TwoHomes
from tests.collector.auth.stack import Stack


def test_every_route_has_an_authorization_rule() -> None:
    from collector.api.routes import audit, auth, devices, health, homes, ingest, readings, users

    missing = [
        (method, route.path)
        for module in (audit, auth, devices, health, homes, ingest, readings, users)
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
        if policy.rule_for(method, route.path) is None
    ]
    assert missing == []


def test_homeowner_sees_own_home_and_devices_only(stack: Stack, homes: TwoHomes) -> None:
    with stack.client(homes.owner_a) as http:
        devices = http.get("/api/v1/devices").json()
        assert [d["device_id"] for d in devices] == ["dev-a"]
        assert [h["home_id"] for h in http.get("/api/v1/homes").json()] == [homes.home_a]
        assert http.get("/api/v1/devices/dev-a").status_code == 200
        assert http.get("/api/v1/devices/dev-a/latest").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/devices/dev-b",
        "/api/v1/devices/dev-b/readings",
        "/api/v1/devices/dev-b/sensors/s1/readings",
        "/api/v1/devices/dev-b/latest",
        "/api/v1/devices/dev-b/health",
        "/api/v1/homes/{home_b}",
        "/api/v1/devices?home_id={home_b}",
        "/api/v1/devices/dev-a/readings?device_id=dev-b",
    ],
)
def test_homeowner_gets_nothing_of_another_home(stack: Stack, homes: TwoHomes, path: str) -> None:
    with stack.client(homes.owner_a) as http:
        resp = http.get(path.format(home_b=homes.home_b))
    assert resp.status_code in (403, 404)
    assert "dev-b" not in resp.text and "Cellar" not in resp.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", {"username": "x", "password": "p" * 12, "role": "admin"}),
        ("GET", "/api/v1/audit", None),
        ("POST", "/api/v1/homes", {"name": "mine now"}),
        ("POST", "/api/v1/devices", {"device_id": "sneaky", "home_id": 1}),
        ("PATCH", "/api/v1/devices/dev-a", {"home_id": None}),
        ("POST", "/api/v1/devices/dev-a/rotate", None),
        ("POST", "/api/v1/devices/dev-a/decommission", None),
        ("PUT", "/api/v1/devices/dev-a/config", {"sample_period_s": 1}),
        ("DELETE", "/api/v1/homes/1", None),
    ],
)
def test_homeowner_cannot_call_admin_functions(
    stack: Stack, homes: TwoHomes, method: str, path: str, body: object
) -> None:
    with stack.client(homes.owner_a) as http:
        resp = http.request(method, path, json=body)
    assert resp.status_code == 403, resp.text


def test_technician_provisions_but_reads_no_readings_and_no_admin(
    stack: Stack, homes: TwoHomes
) -> None:
    with stack.client(homes.technician) as http:
        resp = http.post(
            "/api/v1/devices", json={"device_id": "tech-made", "home_id": homes.home_a}
        )
        assert resp.status_code == 201
        stack.cleartexts += [resp.json()["mqtt"]["password"], resp.json()["http"]["token"]]
        assert http.get("/api/v1/devices/dev-b/health").status_code == 200
        assert http.get("/api/v1/devices/dev-b/readings").status_code == 403
        assert http.post("/api/v1/devices/dev-b/decommission").status_code == 403
        assert http.get("/api/v1/users").status_code == 403


def test_no_mass_assignment_of_role_or_home(stack: Stack, homes: TwoHomes) -> None:
    with stack.client(homes.owner_a) as http:
        for extra in ({"role": "admin"}, {"home_ids": [homes.home_b]}, {"home_id": homes.home_b}):
            resp = http.patch(
                "/api/v1/auth/me",
                json={"current_password": "x", "new_password": "y" * 12, **extra},
            )
            assert resp.status_code == 422
        me = http.get("/api/v1/auth/me").json()
    assert me["role"] == "homeowner" and me["home_ids"] == [homes.home_a]


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_expired_tampered_and_unsigned_tokens_are_refused(stack: Stack, homes: TwoHomes) -> None:
    now = int(time.time())
    claims = {"sub": "1", "iat": now - 3600, "exp": now - 1800, "iss": "thermowatch-collector"}
    expired = jwt.encode(claims, stack.secret_key, algorithm="HS256")
    header, _payload, signature = homes.owner_a.split(".")
    tampered = ".".join((header, _b64({**claims, "exp": now + 600}), signature))
    live = {**claims, "exp": now + 600}
    unsigned = ".".join((_b64({"alg": "none", "typ": "JWT"}), _b64(live), ""))
    other_key = jwt.encode(live, "another-secret-of-32-characters!!", algorithm="HS256")
    for token in (expired, tampered, unsigned, other_key, "garbage", "twk_unknown"):
        with stack.client(token) as http:
            assert http.get("/api/v1/devices").status_code == 401, token
    with stack.client() as http:
        assert http.get("/api/v1/devices").status_code == 401


def test_api_keys_are_shown_once_and_revocable(stack: Stack) -> None:
    with stack.admin() as http:
        created = http.post("/api/v1/auth/api-keys", json={"name": "cron"}).json()
        stack.cleartexts.append(created["key"])
        listed = http.get("/api/v1/auth/api-keys").json()
        assert all("key" not in k for k in listed)
        assert created["prefix"] in [k["prefix"] for k in listed]
        with stack.client(created["key"]) as automation:
            assert automation.get("/api/v1/devices").status_code == 200
            assert http.delete(f"/api/v1/auth/api-keys/{created['key_id']}").status_code == 204
            assert automation.get("/api/v1/devices").status_code == 401


def test_logins_are_rate_limited(stack: Stack) -> None:
    name, _ = stack.new_user("homeowner")
    with stack.client() as http:
        codes = [
            http.post(
                "/api/v1/auth/login", json={"username": name, "password": "wrong password"}
            ).status_code
            for _ in range(7)
        ]
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429, 429]


def test_admin_actions_are_audited(stack: Stack, homes: TwoHomes) -> None:
    with stack.admin() as http:
        assert http.patch("/api/v1/devices/dev-a", json={"name": "Kitchen"}).status_code == 200
        entries = http.get("/api/v1/audit", params={"limit": 50}).json()
    actions = {(e["action"], e["target"]) for e in entries}
    assert ("device.update", "dev-a") in actions
    assert ("device.create", "dev-b") in actions
    assert ("home.create", str(homes.home_b)) in actions
