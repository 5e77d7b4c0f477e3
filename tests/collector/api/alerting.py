"""Helpers for API tests that need alerts: a home with its owner and a provisioned device, readings
sent the way the device sends them (its ingest token over HTTP), and waiting for an alert."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from shared.protocol import encode_batch
from tests.collector.auth.stack import Stack
from tests.support.net import wait_for

_seq = itertools.count(1)


@dataclass
class Household:
    home_id: int
    owner: str  # the homeowner's access token
    device_id: str
    token: str  # the device's ingest token


def household(stack: Stack, name: str, label: str = "Freezer") -> Household:
    home = stack.new_home(f"{name} {secrets.token_hex(2)}")
    _, owner = stack.new_user("homeowner", [home])
    device = f"{name.lower()}-{secrets.token_hex(3)}"
    bundle = stack.provision(device, home, sensors=[{"sensor_id": "s1", "label": label}])
    return Household(home, owner, device, bundle["http"]["token"])


def send(stack: Stack, device_id: str, token: str, *values: float) -> None:
    """One batch from the device: ``values`` of sensor s1, 10 ms apart, ending now (so that
    batches sent within one second do not repeat each other's measurement times)."""
    now = time.time()
    t0 = int(now) - 10
    end_ms = int((now - t0) * 1000)
    readings = [("s1", end_ms - 10 * (len(values) - i), v, 0) for i, v in enumerate(values)]
    body = encode_batch(device_id, next(_seq), "boot1", t0, readings)
    resp = httpx.post(
        stack.url + "/api/v1/ingest", content=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text


def rule(client: httpx.Client, name: str, params: dict[str, Any], **scope: Any) -> int:
    body = {"name": name, "kind": "threshold", "params": params, **scope}
    resp = client.post("/api/v1/alert-rules", json=body)
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def alerts_of(admin: httpx.Client, device_id: str) -> list[dict[str, Any]]:
    resp = admin.get("/api/v1/alerts", params={"state": "all", "device_id": device_id})
    assert resp.status_code == 200, resp.text
    return list(resp.json())


def wait_alert(admin: httpx.Client, device_id: str, rule_id: int, state: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        hits = [
            a
            for a in alerts_of(admin, device_id)
            if a["rule_id"] == rule_id and a["state"] == state
        ]
        return hits[0] if hits else None

    return wait_for(found, 20, what=f"a {state} alert of rule {rule_id} on {device_id}")
