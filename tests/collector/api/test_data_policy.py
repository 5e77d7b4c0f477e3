"""One data policy for measured values on every route: technicians service devices (health,
faults, alert states) but see no value a device measured — not through its latest readings, its
health page, a backtest, the alert list, an alert's history or the live stream. Homeowners and
admins see their values everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.collector.alerts.peers import SseClient
from tests.collector.api.alerting import household, rule, send, wait_alert
from tests.collector.auth.stack import Stack
from tests.support.net import wait_for


def test_technicians_see_no_measured_value_on_any_route(stack: Stack) -> None:
    home = household(stack, "Policy", label="Freezer")
    _, technician = stack.new_user("technician")
    tech_stream = SseClient(stack.url, technician)
    owner_stream = SseClient(stack.url, home.owner)
    try:
        with stack.admin() as admin:
            warm = rule(admin, "policy warm", {"above_c": 8, "for_s": 0}, device_id=home.device_id)
            send(stack, home.device_id, home.token, 12.5)
            alert = wait_alert(admin, home.device_id, warm, "firing")
        wait_for(lambda: tech_stream.events and owner_stream.events, 20, what="stream events")
        device = f"/api/v1/devices/{home.device_id}"
        backtest = {
            "rule": {"name": "probe", "kind": "threshold", "params": {"above_c": 8, "for_s": 0}},
            "device_id": home.device_id,
            "sensor_id": "s1",
            "start": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        }
        with stack.client(technician) as tech, stack.client(home.owner) as owner:
            assert tech.get(device + "/latest").status_code == 403
            assert tech.get(device + "/readings").status_code == 403
            assert tech.post("/api/v1/alert-rules/backtest", json=backtest).status_code == 403

            health = tech.get(device + "/health")
            assert health.status_code == 200
            (sensor,) = health.json()["sensors"]
            assert sensor["value"] is None and sensor["last_seen"] is not None

            seen = tech.get(f"/api/v1/alerts/{alert['id']}").json()
            assert seen["state"] == "firing" and seen["value"] is None
            assert "12.5" not in seen["message"] and "12.5" not in tech.get("/api/v1/alerts").text
            history = tech.get(f"/api/v1/alerts/{alert['id']}/history").json()
            assert history and all(h["value"] is None for h in history)
            for event in tech_stream.events:
                assert event["value"] is None and "12.5" not in event["message"], event

            # The home's people see all of it.
            (own,) = owner.get(device + "/health").json()["sensors"]
            assert own["value"] == 12.5
            assert owner.get(device + "/latest").json()[0]["value"] == 12.5
            assert owner.get(f"/api/v1/alerts/{alert['id']}").json()["value"] == 12.5
            assert "12.5" in owner.get(f"/api/v1/alerts/{alert['id']}").json()["message"]
            tested = owner.post("/api/v1/alert-rules/backtest", json=backtest)
            assert tested.status_code == 200 and tested.json()["readings"] == 1
            assert any(e["value"] == 12.5 for e in owner_stream.events)
    finally:
        tech_stream.close()
        owner_stream.close()
