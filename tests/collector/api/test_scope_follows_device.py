"""A device's rules follow the device's current home: moving it retires the rules made for it in
its former home (answered, audited), closes its open alerts, and from then on only the new
home's rules apply; the former owner can no longer change what applies to it."""

from __future__ import annotations

import time

from collector.alerts.rules import Kind, Rule, applicable
from tests.collector.api.alerting import alerts_of, household, rule, send, wait_alert
from tests.collector.auth.stack import Stack


def test_a_device_rule_applies_only_while_its_device_is_in_the_rule_s_home() -> None:
    made_in_home_7 = Rule(1, "warm", Kind.threshold, {"above_c": 8}, home_id=7, device_id="d1")
    home_rule_8 = Rule(2, "warm", Kind.threshold, {"above_c": 30}, home_id=8)
    rules = [made_in_home_7, home_rule_8]
    assert applicable(rules, "d1", "s1", 7) == [made_in_home_7]
    # The same device now in home 8: the old home's override no longer wins.
    assert applicable(rules, "d1", "s1", 8) == [home_rule_8]


def test_moving_a_device_retires_its_former_home_s_rules_and_hands_it_to_the_new_home(
    stack: Stack,
) -> None:
    a, b = household(stack, "Aside"), household(stack, "Beside")
    with stack.client(a.owner) as owner_a, stack.client(b.owner) as owner_b, stack.admin() as admin:
        # A's own override for the device, and B's home rule of the same name.
        rule_a = rule(owner_a, "too warm", {"above_c": 8, "for_s": 0}, device_id=a.device_id)
        rule_b = rule(owner_b, "too warm", {"above_c": 30, "for_s": 0}, home_id=b.home_id)
        send(stack, a.device_id, a.token, 12.0)
        firing = wait_alert(admin, a.device_id, rule_a, "firing")
        assert firing["home_id"] == a.home_id

        moved = admin.patch(f"/api/v1/devices/{a.device_id}", json={"home_id": b.home_id})
        assert moved.status_code == 200, moved.text
        assert moved.json()["home_id"] == b.home_id
        assert moved.json()["retired_rules"] == [rule_a]
        assert moved.json()["closed_alerts"] == [firing["id"]]

        # The former owner keeps the record of their rule but can change nothing with it.
        retired = owner_a.get(f"/api/v1/alert-rules/{rule_a}").json()
        assert retired["enabled"] is False and retired["retired_at"] is not None
        assert a.device_id in retired["retired_reason"]
        changed = owner_a.patch(f"/api/v1/alert-rules/{rule_a}", json={"enabled": True})
        assert changed.status_code == 409
        assert owner_a.get(f"/api/v1/devices/{a.device_id}").status_code == 404
        closed = admin.get(f"/api/v1/alerts/{firing['id']}").json()
        assert closed["state"] == "resolved"

        entries = admin.get("/api/v1/audit", params={"limit": 50}).json()
        retire = [e for e in entries if e["action"] == "rule.retire" and e["target"] == str(rule_a)]
        assert len(retire) == 1
        assert retire[0]["detail"]["from_home"] == a.home_id
        assert retire[0]["detail"]["to_home"] == b.home_id
        update = next(
            e for e in entries if e["action"] == "device.update" and e["target"] == a.device_id
        )
        assert update["detail"]["retired_rules"] == [rule_a]

        # Let every instance's rule and device cache (alerts_rule_cache_s) see the move.
        time.sleep(2.5)
        send(stack, a.device_id, a.token, 12.0)  # above A's old limit, below B's
        send(stack, a.device_id, a.token, 35.0)  # above both
        fired_b = wait_alert(admin, a.device_id, rule_b, "firing")
        assert fired_b["home_id"] == b.home_id
        # Both batches were evaluated by now (they were committed in order): A's rule raised
        # nothing since the move.
        of_a = [x for x in alerts_of(admin, a.device_id) if x["rule_id"] == rule_a]
        assert [x["id"] for x in of_a] == [firing["id"]]
        # The new owner sees the device's new alert, the former owner does not.
        assert owner_b.get(f"/api/v1/alerts/{fired_b['id']}").status_code == 200
        assert owner_a.get(f"/api/v1/alerts/{fired_b['id']}").status_code == 404


def test_a_rule_of_a_device_without_a_home_is_not_readable_by_homeowners(stack: Stack) -> None:
    a = household(stack, "Homeless")
    stack.provision("no-home-dev", None)
    with stack.admin() as admin, stack.client(a.owner) as owner:
        staff_rule = rule(admin, "staff", {"above_c": 50}, device_id="no-home-dev")
        assert owner.get(f"/api/v1/alert-rules/{staff_rule}").status_code == 404
        assert staff_rule not in [r["id"] for r in owner.get("/api/v1/alert-rules").json()]
        assert admin.get(f"/api/v1/alert-rules/{staff_rule}").status_code == 200
