"""Where alerts go and who quieted them is in the audit log: every change to a rule, every
acknowledgement and every silence, with who did it."""

from __future__ import annotations

from typing import Any

from tests.collector.api.alerting import household, rule, send, wait_alert
from tests.collector.auth.stack import Stack


def _entries(stack: Stack, kind: str, target: int) -> list[dict[str, Any]]:
    """Oldest first: the entries about one rule (``kind`` "rule") or alert ("alert")."""
    with stack.admin() as admin:
        entries = admin.get("/api/v1/audit", params={"limit": 200}).json()
    return [
        e
        for e in reversed(entries)
        if e["target"] == str(target) and e["action"].startswith(kind + ".")
    ]


def test_rule_changes_acknowledgements_and_silences_are_audited(stack: Stack) -> None:
    home = household(stack, "Audited")
    with stack.client(home.owner) as owner:
        rule_id = rule(owner, "audited", {"above_c": 8, "for_s": 0}, device_id=home.device_id)
        patched = owner.patch(f"/api/v1/alert-rules/{rule_id}", json={"severity": "critical"})
        assert patched.status_code == 200
        send(stack, home.device_id, home.token, 11.0)
        with stack.admin() as admin:
            alert = wait_alert(admin, home.device_id, rule_id, "firing")
        ack = owner.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"note": "on it"})
        assert ack.status_code == 200
        silenced = owner.post(f"/api/v1/alerts/{alert['id']}/silence", json={"duration_s": 600})
        assert silenced.status_code == 200
        # A refused acknowledgement changed nothing and is not recorded.
        assert owner.post(f"/api/v1/alerts/{alert['id']}/acknowledge").status_code == 409
        assert owner.delete(f"/api/v1/alert-rules/{rule_id}").status_code == 204

    owner_name = owner_name_of(stack, home.owner)
    on_rule = _entries(stack, "rule", rule_id)
    assert [(e["action"], e["actor"]) for e in on_rule] == [
        ("rule.create", owner_name),
        ("rule.update", owner_name),
        ("rule.delete", owner_name),
    ]
    assert on_rule[0]["detail"]["device_id"] == home.device_id
    assert on_rule[0]["detail"]["params"]["above_c"] == 8
    assert on_rule[1]["detail"]["severity"] == "critical"
    on_alert = _entries(stack, "alert", alert["id"])
    assert [e["action"] for e in on_alert] == ["alert.acknowledge", "alert.silence"]
    assert on_alert[0]["detail"]["note"] == "on it"
    assert on_alert[1]["detail"]["duration_s"] == 600


def owner_name_of(stack: Stack, token: str) -> str:
    with stack.client(token) as http:
        return str(http.get("/api/v1/auth/me").json()["username"])
