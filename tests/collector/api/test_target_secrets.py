"""Notification targets' secrets against the real collector: encrypted at rest, shown only as a
mask (a webhook's URL in full to those who may edit the target), a kept secret refused whenever
the destination changes, and an admin's target out of a homeowner's hands unless allowed."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest

from collector.notify.secrets import MASK, box_for, open_config
from tests.collector.api.alerting import household
from tests.collector.auth.stack import Stack

# Saved, never contacted: an address outside every special-purpose range.
PUBLIC_IP = "44.0.0.1"


def _stored(stack: Stack, target_id: int) -> dict[str, Any]:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT kind, config FROM notify_targets WHERE id = %s", (target_id,)
        ).fetchone()
    assert row is not None
    return {"kind": row[0], "config": row[1]}


def _database_text(url: str) -> str:
    with psycopg.connect(url) as conn:
        return "\n".join(
            r[0]
            for table in ("notify_targets", "audit_log", "alert_outbox")
            for r in conn.execute(f"SELECT row_to_json(t)::text FROM {table} t")
        )


def _smtp(home_id: int, password: str, **config: Any) -> dict[str, Any]:
    return {
        "name": "relay",
        "kind": "smtp",
        "home_id": home_id,
        "config": {
            "host": PUBLIC_IP,
            "port": 587,
            "sender": "alerts@example.org",
            "to": ["owner@example.org"],
            "username": "relay-user",
            "password": password,
            **config,
        },
    }


def test_a_kept_secret_is_never_sent_to_a_changed_destination(stack: Stack) -> None:
    home = household(stack, "Relay")
    relay_password = "relay-" + secrets.token_urlsafe(12)
    stack.cleartexts.append(relay_password)
    with stack.admin() as admin, stack.client(home.owner) as owner:
        created = admin.post("/api/v1/notify-targets", json=_smtp(home.home_id, relay_password))
        assert created.status_code == 201, created.text
        target = created.json()
        tid = target["id"]
        assert target["config"]["password"] == MASK and target["owner_editable"] is False

        # Until an admin allows it, the homeowner sees the target but cannot touch it.
        (seen,) = [t for t in owner.get("/api/v1/notify-targets").json() if t["id"] == tid]
        assert seen["editable"] is False and seen["config"]["password"] == MASK
        assert owner.put(f"/api/v1/notify-targets/{tid}", json=seen).status_code == 403
        assert owner.delete(f"/api/v1/notify-targets/{tid}").status_code == 403

        allowed = admin.put(
            f"/api/v1/notify-targets/{tid}", json={**target, "owner_editable": True}
        )
        assert allowed.status_code == 200, allowed.text
        stored = _stored(stack, tid)
        assert relay_password not in str(stored)  # encrypted at rest ...
        box = box_for(stack.secret_key)
        assert open_config(box, "smtp", stored["config"])["password"] == relay_password  # kept

        # The attack: keep the masked password and point the target at another server.
        seen = owner.get("/api/v1/notify-targets").json()
        (seen,) = [t for t in seen if t["id"] == tid]
        for change, named in (
            ({"host": "192.0.2.66"}, "host"),
            ({"port": 2525}, "port"),
            ({"starttls": False}, "starttls"),
        ):
            body = {**seen, "config": {**seen["config"], **change}}
            refused = owner.put(f"/api/v1/notify-targets/{tid}", json=body)
            assert refused.status_code == 422, (change, refused.text)
            assert f"destination changed ({named})" in refused.text
            assert "enter the secret again" in refused.text
        as_mqtt = {**seen, "kind": "mqtt", "config": {"host": PUBLIC_IP, "password": MASK}}
        refused = owner.put(f"/api/v1/notify-targets/{tid}", json=as_mqtt)
        assert refused.status_code == 422 and "(kind)" in refused.text
        assert open_config(box, "smtp", _stored(stack, tid)["config"]) == open_config(
            box, "smtp", stored["config"]
        )

        # Other changes keep the secret where it was entered ...
        recipients = {**seen, "config": {**seen["config"], "to": ["other@example.org"]}}
        kept = owner.put(f"/api/v1/notify-targets/{tid}", json=recipients)
        assert kept.status_code == 200, kept.text
        reopened = open_config(box, "smtp", _stored(stack, tid)["config"])
        assert reopened["password"] == relay_password and reopened["to"] == ["other@example.org"]
        # ... and a new destination with its own secret is the homeowner's to set.
        own = {**seen, "config": {**seen["config"], "port": 465, "password": "owner-pw-1"}}
        stack.cleartexts.append("owner-pw-1")
        assert owner.put(f"/api/v1/notify-targets/{tid}", json=own).status_code == 200
        # Only admins decide who may edit.
        locked = owner.put(f"/api/v1/notify-targets/{tid}", json={**own, "owner_editable": False})
        assert locked.status_code == 403

        entries = admin.get("/api/v1/audit", params={"limit": 100}).json()
        mine = [e for e in entries if e["target"] == str(tid) and e["action"].startswith("target.")]
        assert [e["action"] for e in reversed(mine)] == ["target.create"] + ["target.replace"] * 3
        assert mine[0]["detail"]["secrets_entered"] == ["password"]
        assert mine[1]["detail"]["secrets_entered"] == []  # the kept password
    text = _database_text(stack.database_url) + stack.collector.log()
    assert relay_password not in text and "owner-pw-1" not in text


def test_secrets_are_masked_and_a_webhook_url_is_shown_only_to_who_may_edit(
    stack: Stack,
) -> None:
    home = household(stack, "Hooks")
    _, technician = stack.new_user("technician")
    token_path = "/services/T0/" + secrets.token_urlsafe(16)
    signing = secrets.token_urlsafe(16)
    stack.cleartexts += [token_path, signing]
    url = f"https://{PUBLIC_IP}:8443{token_path}"
    with stack.admin() as admin, stack.client(home.owner) as owner:
        managed = admin.post(
            "/api/v1/notify-targets",
            json={
                "name": "installer",
                "kind": "webhook",
                "home_id": home.home_id,
                "config": {"url": url, "secret": signing},
            },
        ).json()
        shared = admin.post(
            "/api/v1/notify-targets",
            json={
                "name": "shared",
                "kind": "webhook",
                "home_id": home.home_id,
                "owner_editable": True,
                "config": {"url": url, "secret": signing},
            },
        ).json()
        assert managed["config"] == {"url": url, "secret": MASK, "timeout_s": 10.0}

        masked = f"https://{PUBLIC_IP}:8443/{MASK}"
        with stack.client(technician) as tech:
            shown = {t["id"]: t for t in tech.get("/api/v1/notify-targets").json()}
        assert shown[managed["id"]]["config"]["url"] == masked
        assert shown[shared["id"]]["config"]["url"] == masked
        assert all(t["editable"] is False for t in shown.values())
        shown = {t["id"]: t for t in owner.get("/api/v1/notify-targets").json()}
        assert shown[managed["id"]]["config"]["url"] == masked  # the admin's, not editable
        assert shown[shared["id"]]["config"]["url"] == url  # theirs to edit
        assert shown[shared["id"]]["config"]["secret"] == MASK

        # A mask is only ever a stored secret's stand-in.
        new = {
            "name": "mine",
            "kind": "webhook",
            "home_id": home.home_id,
            "config": {"url": url, "secret": MASK},
        }
        refused = owner.post("/api/v1/notify-targets", json=new)
        assert refused.status_code == 422 and "no stored secret" in refused.text
    text = _database_text(stack.database_url) + stack.collector.log()
    assert token_path not in text and signing not in text


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "[64:ff9b::a00:1]"])
def test_a_homeowner_s_target_must_point_at_a_public_address(stack: Stack, host: str) -> None:
    home = household(stack, "Private")
    with stack.client(home.owner) as owner:
        resp = owner.post(
            "/api/v1/notify-targets",
            json={
                "name": "inside",
                "kind": "webhook",
                "home_id": home.home_id,
                "config": {"url": f"http://{host}:8080/hook"},
            },
        )
    assert resp.status_code == 422 and "public address" in resp.text
