"""Target secrets at rest: sealed with a key derived from the server secret and bound to the
target's destination, opened only by the drainer right before sending (which checks the
destination's addresses again), and sealed in place by the upgrade for targets saved before."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import psycopg
import pytest
from alembic import command

from collector.alerts.engine import AlertEngine
from collector.config import Settings
from collector.db import migrate
from collector.notify.outbox import OutboxDrainer
from collector.notify.secrets import SecretBox, SecretError, box_for, open_config, seal_config
from tests.collector.alerts.peers import WebhookReceiver
from tests.collector.alerts.support import add_rule, work
from tests.collector.notify.conftest import Dns
from tests.support.database import create_database, drop_database

KEY = secrets.token_urlsafe(48)


def test_a_sealed_secret_opens_only_with_its_server_secret_and_its_destination() -> None:
    box = SecretBox(KEY)
    config = {"host": "mail.example.org", "port": 587, "starttls": True, "password": "pw-1"}
    stored = seal_config(box, "smtp", config)
    assert "pw-1" not in json.dumps(stored)
    assert stored["host"] == "mail.example.org"  # only secrets are sealed
    assert open_config(box, "smtp", stored) == config
    with pytest.raises(SecretError):
        open_config(SecretBox(secrets.token_urlsafe(48)), "smtp", stored)
    for moved in ({"host": "relay.example.net"}, {"port": 25}, {"starttls": False}):
        with pytest.raises(SecretError):
            open_config(box, "smtp", {**stored, **moved})
    # A webhook's URL is itself sealed, and its signing secret is bound to it.
    hook = seal_config(box, "webhook", {"url": "https://h.example.org/T/x", "secret": "s"})
    other = seal_config(box, "webhook", {"url": "https://h.example.org/T/y", "secret": "s"})
    with pytest.raises(SecretError):
        open_config(box, "webhook", {**hook, "url": other["url"]})


def _target(conn: psycopg.Connection, config: dict[str, Any], *, private_ok: bool) -> int:
    row = conn.execute(
        "INSERT INTO notify_targets (name, kind, config, private_ok) "
        "VALUES ('hook', 'webhook', %s, %s) RETURNING id",
        (json.dumps(seal_config(box_for(KEY), "webhook", config)), private_ok),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_drainer_opens_the_secrets_and_checks_the_destination_again_when_sending(
    db: psycopg.Connection, alerts_database_url: str, dns: Dns
) -> None:
    hook = WebhookReceiver()
    try:
        port = hook.server.server_address[1]
        signing = secrets.token_urlsafe(12)
        # A homeowner's target, public when it was saved and private now; and an admin's.
        dns.set("owner.test", "127.0.0.1")
        owners = _target(db, {"url": f"http://owner.test:{port}/o"}, private_ok=False)
        dns.set("admin.test", "127.0.0.1")
        admins = _target(
            db, {"url": f"http://admin.test:{port}/a", "secret": signing}, private_ok=True
        )
        add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0})
        now = int(time.time() * 1000)
        AlertEngine(alerts_database_url).process(
            [work("d1", [("s1", now - 1000, 31.0)])], now_ms=now
        )
        assert OutboxDrainer(alerts_database_url, secret_key=KEY).drain_once(db) == 2
    finally:
        hook.close()
    (request,) = hook.requests  # only the admin's target was reached
    stamp, mac = request.headers["X-Thermowatch-Signature"].split(",")
    expected = hmac.new(
        signing.encode(), stamp[2:].encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert mac == f"v1={expected}"
    outcome = dict(
        db.execute("SELECT target_id, status || ': ' || coalesce(last_error, '') FROM alert_outbox")
    )
    assert outcome[admins] == "sent: "
    assert (
        outcome[owners].startswith("failed: destination refused")
        and "not public" in outcome[owners]
    )


def test_a_target_whose_secrets_cannot_be_opened_fails_without_sending(
    db: psycopg.Connection, alerts_database_url: str, dns: Dns
) -> None:
    hook = WebhookReceiver()
    try:
        dns.set("admin.test", "127.0.0.1")
        port = hook.server.server_address[1]
        _target(db, {"url": f"http://admin.test:{port}/a"}, private_ok=True)
        add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0})
        now = int(time.time() * 1000)
        AlertEngine(alerts_database_url).process(
            [work("d1", [("s1", now - 1000, 31.0)])], now_ms=now
        )
        other_key = secrets.token_urlsafe(48)
        OutboxDrainer(alerts_database_url, secret_key=other_key).drain_once(db)
    finally:
        hook.close()
    assert hook.requests == []
    status, error = db.execute("SELECT status, last_error FROM alert_outbox").fetchone()  # type: ignore[misc]
    assert status == "failed" and "enter them again" in error


def test_the_upgrade_seals_existing_secrets_and_retires_rules_of_devices_that_moved() -> None:
    url = create_database()
    try:
        cfg = migrate.alembic_config(url)
        command.upgrade(cfg, "0006")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO homes (name) VALUES ('one'), ('two')")
            conn.execute("INSERT INTO devices (device_id, home_id) VALUES ('moved', 2)")
            for name, home, config in (
                ("all", None, {"url": "https://h.example.org/T0KEN", "secret": "sig-1"}),
                ("home", 1, {"url": "https://h.example.org/T1", "secret": None}),
            ):
                conn.execute(
                    "INSERT INTO notify_targets (name, kind, home_id, config) "
                    "VALUES (%s, 'webhook', %s, %s)",
                    (name, home, json.dumps(config)),
                )
            conn.execute(
                "INSERT INTO alert_rules (id, name, kind, home_id, device_id, params) "
                "VALUES (7, 'warm', 'threshold', 1, 'moved', '{\"above_c\": 8}')"
            )
            conn.execute(
                "INSERT INTO alerts (id, rule_id, device_id, sensor_id, home_id, kind, severity, "
                "state, started_at) VALUES (70, 7, 'moved', 's1', 1, 'threshold', 'warning', "
                "'firing', now())"
            )
        migrate.upgrade(Settings(database_url=url, secret_key=KEY))
        with psycopg.connect(url) as conn:
            targets = {
                r[0]: r[1:]
                for r in conn.execute(
                    "SELECT name, config, private_ok, owner_editable FROM notify_targets"
                )
            }
            rule = conn.execute(
                "SELECT enabled, retired_at IS NOT NULL FROM alert_rules WHERE id = 7"
            ).fetchone()
            alert = conn.execute("SELECT state FROM alerts WHERE id = 70").fetchone()
            note = conn.execute("SELECT note FROM alert_history WHERE alert_id = 70").fetchone()
        assert "T0KEN" not in json.dumps(targets) and "sig-1" not in json.dumps(targets)
        box = box_for(KEY)
        assert open_config(box, "webhook", targets["all"][0])["secret"] == "sig-1"
        assert open_config(box, "webhook", targets["home"][0])["url"].endswith("/T1")
        # Only admins make targets for every home; who made a home's target is not known.
        assert targets["all"][1:] == (True, False) and targets["home"][1:] == (False, False)
        assert rule == (False, True) and alert == ("resolved",)
        assert note is not None and "moved to another home" in note[0]

        cfg.attributes["secret_key"] = KEY
        command.downgrade(cfg, "0006")
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT config FROM notify_targets WHERE name = 'all'").fetchone()
        assert row == ({"url": "https://h.example.org/T0KEN", "secret": "sig-1"},)
    finally:
        drop_database(url)
