"""Alerts end to end: readings published over MQTT to a real collector (PostgreSQL, Mosquitto),
alerts read through the API and the live stream, notifications received by a real webhook
receiver, a real SMTP server and a Home Assistant discovery subscriber."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from shared import protocol as p
from tests.collector.alerts.peers import SmtpServer, SseClient, WebhookReceiver
from tests.support.broker import MosquittoBroker
from tests.support.database import create_database, drop_database
from tests.support.mqtt import TestClient
from tests.support.net import wait_for
from tests.support.processes import CollectorProcess, start_collector

FAST = dict(
    alerts_sweep_interval_s=0.3,
    alerts_rule_cache_s=0.2,
    notify_poll_interval_s=0.2,
    notify_backoff_base_s=0.3,
    homeassistant_sync_interval_s=0.5,
    # Synthetic series spanning the last half hour count as live; a backfill is older.
    alerts_live_window_s=3600,
)
_seq = itertools.count(1)


@dataclass
class Env:
    database_url: str
    collector: CollectorProcess
    admin: httpx.Client
    broker: MosquittoBroker
    mqtt: TestClient

    def home(self) -> int:
        resp = self.admin.post("/api/v1/homes", json={"name": f"home-{secrets.token_hex(3)}"})
        assert resp.status_code == 201, resp.text
        return int(resp.json()["home_id"])

    def device(self, home_id: int | None, name: str = "Garage", label: str = "Freezer") -> str:
        device_id = f"dev-{secrets.token_hex(4)}"
        resp = self.admin.post(
            "/api/v1/devices",
            json={
                "device_id": device_id,
                "name": name,
                "home_id": home_id,
                "sensors": [{"sensor_id": "s1", "label": label}],
            },
        )
        assert resp.status_code == 201, resp.text
        return device_id

    def rule(
        self, kind: str, params: dict[str, Any], *, client: httpx.Client | None = None, **scope: Any
    ) -> int:
        body = {"name": f"{kind}-{secrets.token_hex(3)}", "kind": kind, "params": params, **scope}
        resp = (client or self.admin).post("/api/v1/alert-rules", json=body)
        assert resp.status_code == 201, resp.text
        return int(resp.json()["id"])

    def target(self, kind: str, home_id: int | None, config: dict[str, Any], **extra: Any) -> int:
        body = {"name": kind, "kind": kind, "home_id": home_id, "config": config, **extra}
        resp = self.admin.post("/api/v1/notify-targets", json=body)
        assert resp.status_code == 201, resp.text
        return int(resp.json()["id"])

    def send(
        self,
        device_id: str,
        points: list[tuple[float, float | None]],
        sensor: str = "s1",
        anomalies: list[float] = (),  # type: ignore[assignment]
    ) -> None:
        """Publish one batch: ``(unix seconds, value or None for a probe fault)``, and edge
        anomaly events at the given times."""
        t0 = int(min(t for t, _ in points))
        readings = [
            (
                sensor,
                round((t - t0) * 1000),
                v,
                0 if v is not None else p.Q_PROBE_FAULT,
                None if v is not None else p.FAULT_CRC,
            )
            for t, v in points
        ]
        events = [(sensor, round((t - t0) * 1000), p.EV_ANOMALY, 30.0, 9.0) for t in anomalies]
        payload = p.encode_batch(device_id, next(_seq), "boot1", t0, readings, events)
        self.mqtt.publish_all([(p.topic(device_id, p.T_READINGS), payload)])

    def alerts(self, client: httpx.Client | None = None, **query: Any) -> list[dict[str, Any]]:
        resp = (client or self.admin).get("/api/v1/alerts", params={"state": "all", **query})
        assert resp.status_code == 200, resp.text
        return list(resp.json())


@pytest.fixture(scope="module")
def env(broker: MosquittoBroker) -> Iterator[Env]:
    url = create_database()
    proc = start_collector(url, broker.port, name="alerts", **FAST)
    mqtt = TestClient(broker.port)
    try:
        with proc.admin_client() as admin:
            yield Env(url, proc, admin, broker, mqtt)
    finally:
        mqtt.close()
        proc.stop()
        drop_database(url)


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


def wait_alert(env: Env, device_id: str, state: str, timeout_s: float = 20) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        hits = [a for a in env.alerts(device_id=device_id) if a["state"] == state]
        return hits[0] if hits else None

    return wait_for(found, timeout_s, what=f"a {state} alert on {device_id}")


def test_threshold_alert_fires_and_resolves_with_signed_webhook_and_email(
    env: Env, hook: WebhookReceiver
) -> None:
    smtp = SmtpServer()
    try:
        home = env.home()
        device = env.device(home)
        env.rule(
            "threshold",
            {"above_c": 8, "hysteresis_c": 0.5, "for_s": 2, "flap_window_s": 0.5},
            device_id=device,
        )
        env.target("webhook", home, {"url": hook.url, "secret": "s3cret"})
        env.target(
            "smtp",
            home,
            {
                "host": "127.0.0.1",
                "port": smtp.port,
                "sender": "alerts@example.org",
                "to": ["owner@example.org"],
                "starttls": False,
            },
        )
        base = time.time() - 60
        env.send(device, [(base + i, 12.0) for i in range(20)])
        wait_for(lambda: len(hook.requests) >= 1, 20, what="firing webhook")
        env.send(device, [(base + 20 + i, 4.0) for i in range(10)])
        wait_for(lambda: len(hook.requests) >= 2, 20, what="resolved webhook")
        wait_for(lambda: len(smtp.messages) >= 2, 20, what="two e-mails")
    finally:
        smtp.close()

    firing, resolved = hook.requests[0], hook.requests[1]
    t, mac = firing.headers["X-Thermowatch-Signature"].removeprefix("t=").split(",v1=")
    expected = hmac.new(b"s3cret", t.encode() + b"." + firing.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    assert firing.json["text"] == "ALERT [warning] Freezer in Garage is 12 °C, above 8 °C for 2 s"
    assert [a["event"] for a in firing.json["alerts"]] == ["firing"]
    assert firing.json["alerts"][0]["device_id"] == device
    assert resolved.json["alerts"][0]["event"] == "resolved"
    assert resolved.json["text"].startswith(
        "RESOLVED [warning] Resolved: Freezer in Garage is back"
    )
    subjects = [m["Subject"] for m in smtp.messages]
    assert subjects[0] == "[Thermowatch] ALERT: Freezer in Garage is 12 °C, above 8 °C for 2 s"
    assert subjects[1].startswith("[Thermowatch] RESOLVED: Resolved: Freezer in Garage")
    assert smtp.messages[0]["To"] == "owner@example.org"
    (alert,) = env.alerts(device_id=device)
    history = env.admin.get(f"/api/v1/alerts/{alert['id']}/history").json()
    assert [h["to_state"] for h in history] == ["pending", "firing", "resolved"]


def test_a_receiver_answering_500_is_retried_until_it_accepts(env: Env) -> None:
    hook = WebhookReceiver(fail_first=2)
    try:
        home = env.home()
        device = env.device(home)
        env.rule("threshold", {"above_c": 8, "for_s": 0}, device_id=device)
        target = env.target("webhook", home, {"url": hook.url})
        env.send(device, [(time.time() - 5, 12.0)])
        wait_for(lambda: len(hook.requests) >= 3, 20, what="three attempts")
    finally:
        hook.close()
    assert len({r.headers["X-Thermowatch-Delivery"] for r in hook.requests}) == 1
    with psycopg.connect(env.database_url) as conn:
        row = conn.execute(
            "SELECT status, attempts FROM alert_outbox WHERE target_id = %s", (target,)
        ).fetchone()
    assert row == ("sent", 3)


def test_each_rule_kind_fires_and_resolves_on_ingested_data(env: Env) -> None:
    home = env.home()
    now = time.time()
    rate, anomaly, fault, edge = (env.device(home) for _ in range(4))
    env.rule("rate", {"rise_c_per_h": 6, "window_s": 300, "flap_window_s": 0}, device_id=rate)
    env.rule(
        "anomaly", {"source": "server", "clear_after_s": 60, "flap_window_s": 0}, device_id=anomaly
    )
    env.rule("probe_fault", {"for_s": 30, "flap_window_s": 0}, device_id=fault)
    env.rule("anomaly", {"source": "edge", "clear_after_s": 30, "flap_window_s": 0}, device_id=edge)
    time.sleep(0.5)  # rule caches
    start = now - 2400
    # A freezer door left open for 15 minutes: 12 °C/h, then steady again.
    env.send(
        rate,
        [(start + t, -18.0 + 12.0 * min(max(t - 600, 0), 900) / 3600) for t in range(0, 2400, 10)],
    )
    # A smooth cycle with one jump in it.
    cycle = [(now - 3100 + t, 20 + 3 * math.sin(t / 600)) for t in range(0, 3000, 10)]
    cycle[200] = (cycle[200][0], 35.0)
    env.send(anomaly, cycle[:100])
    env.send(anomaly, cycle[100:])
    env.send(fault, [(start + t, 4.0 if not 100 <= t < 400 else None) for t in range(0, 600, 10)])
    # The board's own EWMA detector reported one anomaly; its readings are ordinary after it.
    env.send(edge, [(start + t, 4.0) for t in range(0, 120, 10)], anomalies=[start + 20])
    checks = ((rate, "rate"), (anomaly, "anomaly"), (fault, "probe_fault"), (edge, "anomaly"))
    for device, kind in checks:
        try:
            alert = wait_alert(env, device, "resolved")
        except TimeoutError:
            raise AssertionError(f"{kind}: {env.alerts(device_id=device)}") from None
        assert alert["fired_at"] is not None
        firing = env.admin.get(f"/api/v1/alerts/{alert['id']}/history").json()
        assert "firing" in [h["to_state"] for h in firing]
        assert alert["kind"] == kind
        assert alert["message"].startswith("Resolved: ")


def test_stale_rule_fires_when_a_board_stops_and_clears_when_it_returns(env: Env) -> None:
    home = env.home()
    device = env.device(home)
    env.rule(
        "stale",
        {"expected_interval_s": 0.5, "missed_intervals": 2, "flap_window_s": 0},
        device_id=device,
    )
    time.sleep(0.5)
    for _ in range(5):
        env.send(device, [(time.time(), 4.0)])
        time.sleep(0.2)
    alert = wait_alert(env, device, "firing")
    assert alert["kind"] == "stale" and "has not reported for" in alert["message"]
    env.send(device, [(time.time(), 4.0)])
    resolved = wait_alert(env, device, "resolved")
    assert resolved["id"] == alert["id"]


def test_device_offline_from_its_last_will_and_back(env: Env) -> None:
    home = env.home()
    device = env.device(home)
    env.rule("offline", {"expected_interval_s": 60, "flap_window_s": 0}, device_id=device)
    env.send(device, [(time.time(), 4.0)])
    time.sleep(0.5)
    status = p.topic(device, p.T_STATUS)
    env.mqtt.client.publish(
        status, p.encode_status("offline"), qos=1, retain=True
    ).wait_for_publish(5)
    alert = wait_alert(env, device, "firing")
    assert alert["kind"] == "offline" and alert["sensor_id"] == ""
    env.mqtt.client.publish(status, p.encode_status("online"), qos=1, retain=True).wait_for_publish(
        5
    )
    env.send(device, [(time.time(), 4.0)])
    wait_alert(env, device, "resolved")


def test_backfill_after_an_outage_sends_no_notification_for_an_ended_condition(
    env: Env, hook: WebhookReceiver
) -> None:
    home = env.home()
    device = env.device(home)
    env.rule("threshold", {"above_c": 8, "for_s": 60, "flap_window_s": 0}, device_id=device)
    env.target("webhook", home, {"url": hook.url})
    time.sleep(0.5)
    two_hours_ago = time.time() - 7200
    env.send(
        device, [(two_hours_ago + t, 12.0 if 300 <= t < 900 else 4.0) for t in range(0, 1800, 10)]
    )
    alert = wait_alert(env, device, "resolved")
    assert alert["backfill"] is True and alert["fired_at"] is not None
    time.sleep(1.5)  # several outbox polls
    assert hook.requests == []


def test_acknowledge_and_silence_through_the_api(env: Env) -> None:
    home = env.home()
    device = env.device(home)
    env.rule("threshold", {"above_c": 8, "for_s": 0}, device_id=device)
    time.sleep(0.5)
    env.send(device, [(time.time() - 1, 12.0)])
    alert = wait_alert(env, device, "firing")
    resp = env.admin.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"note": "on it"})
    assert resp.status_code == 200 and resp.json()["state"] == "acknowledged"
    assert env.admin.post(f"/api/v1/alerts/{alert['id']}/acknowledge").status_code == 409
    resp = env.admin.post(f"/api/v1/alerts/{alert['id']}/silence", json={"duration_s": 3600})
    assert resp.status_code == 200 and resp.json()["silenced_until"] is not None
    history = env.admin.get(f"/api/v1/alerts/{alert['id']}/history").json()
    assert [h["to_state"] for h in history] == ["firing", "acknowledged", "acknowledged"]
    assert history[1]["note"] == "on it"


def test_rules_are_validated(env: Env) -> None:
    resp = env.admin.post(
        "/api/v1/alert-rules",
        json={"name": "x", "kind": "threshold", "params": {"hysteresis_c": 1}},
    )
    assert resp.status_code == 422
    assert "above_c or below_c" in resp.text


def test_text_the_database_cannot_store_is_refused_not_a_server_error(env: Env) -> None:
    # PostgreSQL's text and jsonb hold no NUL character.
    rule = {"name": "n", "kind": "threshold", "params": {"above_c": 5}}
    backtest = {
        "rule": rule,
        "device_id": "d\x001",
        "sensor_id": "s",
        "start": "2026-01-01T00:00:00Z",
    }
    bad_bodies = [
        ("/api/v1/alert-rules", {**rule, "name": "bad\x00name"}),
        ("/api/v1/alert-rules", {**rule, "params": {"above_c": 5, "note": "a\x00b"}}),
        ("/api/v1/alert-rules/backtest", backtest),
    ]
    for path, body in bad_bodies:
        resp = env.admin.post(path, json=body)  # JSON carries the NUL as \u0000
        assert resp.status_code == 422, (path, resp.status_code, resp.text)
    assert env.admin.get("/api/v1/alerts", params={"device_id": "a\x00"}).status_code == 422


def test_an_alert_fired_on_one_instance_reaches_the_stream_of_another(env: Env) -> None:
    other = start_collector(env.database_url, None, name="alerts-b", **FAST)
    try:
        home = env.home()
        device = env.device(home)
        env.rule("threshold", {"above_c": 8, "for_s": 0}, device_id=device)
        key = env.admin.headers["Authorization"].removeprefix("Bearer ")
        stream = SseClient(other.url, key)
        try:
            assert stream.status == 200
            time.sleep(0.5)
            env.send(device, [(time.time(), 12.0)])
            wait_for(
                lambda: any(
                    e["device_id"] == device and e["event"] == "firing" for e in stream.events
                ),
                20,
                what="the firing event on the other instance's stream",
            )
        finally:
            stream.close()
    finally:
        other.stop()


def test_home_assistant_discovery_is_published_in_its_documented_format(env: Env) -> None:
    home = env.home()
    device = env.device(home, name="Garage", label="Freezer")
    env.rule("threshold", {"above_c": 8, "for_s": 0}, device_id=device)
    env.target("homeassistant", home, {"host": "127.0.0.1", "port": env.broker.port})
    watcher = TestClient(env.broker.port)
    try:
        watcher.subscribe("homeassistant/#")
        watcher.subscribe("thermowatch/#")
        env.send(device, [(time.time() - 1, 12.0)])
        node = f"tw_{device.replace('-', '-')}"
        sensor_topic = f"homeassistant/sensor/{node}/s1_temperature/config"
        watcher.wait_received(1, sensor_topic, timeout_s=20)
        wait_for(
            lambda: [
                m
                for m in watcher.messages
                if m.topic.startswith(f"homeassistant/binary_sensor/{node}/")
            ],
            20,
            what="the alert's binary_sensor config",
        )
        # The discovery config may go out before the reading is committed; its state follows
        # at the next sync.
        wait_for(
            lambda: any(m.payload == b"12.00" for m in watcher.messages if "/s1/" in m.topic),
            20,
            what="the temperature state",
        )
        msgs = {m.topic: m for m in watcher.messages}
    finally:
        watcher.close()
    sensor = json.loads(msgs[sensor_topic].payload)
    assert sensor["device_class"] == "temperature"
    assert sensor["unit_of_measurement"] == "°C"
    assert sensor["name"] == "Freezer"
    assert sensor["unique_id"] == f"{node}_s1_temperature"
    assert sensor["device"]["identifiers"] == [f"thermowatch_{device}"]
    assert sensor["device"]["name"] == "Garage"
    assert msgs[sensor["state_topic"]].payload == b"12.00"
    (binary_topic,) = [t for t in msgs if t.startswith(f"homeassistant/binary_sensor/{node}/")]
    binary = json.loads(msgs[binary_topic].payload)
    assert binary["device_class"] == "problem"
    assert binary_topic.endswith("/config")
    assert msgs[binary["state_topic"]].payload == b"ON"
    # Retained: Home Assistant finds them when it (re)starts, without anyone re-publishing.
    late = TestClient(env.broker.port)
    try:
        late.subscribe(sensor_topic)
        late.wait_received(1, sensor_topic, timeout_s=5)
    finally:
        late.close()


def test_homeowner_a_never_sees_or_receives_home_b_alerts(env: Env) -> None:
    home_a, home_b = env.home(), env.home()
    dev_a, dev_b = env.device(home_a), env.device(home_b)
    tokens = {}
    for name, home in (("a", home_a), ("b", home_b)):
        username, password = f"owner-{name}-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
        resp = env.admin.post(
            "/api/v1/users",
            json={
                "username": username,
                "password": password,
                "role": "homeowner",
                "home_ids": [home],
            },
        )
        assert resp.status_code == 201, resp.text
        login = httpx.post(
            env.collector.url + "/api/v1/auth/login",
            json={"username": username, "password": password},
        )
        tokens[name] = login.json()["access_token"]
    owner_a = httpx.Client(
        base_url=env.collector.url, headers={"Authorization": f"Bearer {tokens['a']}"}, timeout=10
    )
    hook_a = WebhookReceiver()
    stream_a = SseClient(env.collector.url, tokens["a"])
    try:
        # A manages their own rules and targets; B's device and home are out of reach.
        env.rule("threshold", {"above_c": 8, "for_s": 0}, client=owner_a, device_id=dev_a)
        refused = owner_a.post(
            "/api/v1/alert-rules",
            json={"name": "x", "kind": "threshold", "params": {"above_c": 1}, "device_id": dev_b},
        )
        assert refused.status_code == 404
        refused = owner_a.post(
            "/api/v1/alert-rules",
            json={"name": "x", "kind": "threshold", "params": {"above_c": 1}, "home_id": home_b},
        )
        assert refused.status_code == 403
        resp = owner_a.post(
            "/api/v1/notify-targets",
            json={
                "name": "mine",
                "kind": "webhook",
                "home_id": home_a,
                "config": {"url": hook_a.url},
            },
        )
        # The receiver listens on loopback: a homeowner may not point the collector there.
        assert resp.status_code == 422 and "public address" in resp.text
        refused = owner_a.post(
            "/api/v1/notify-targets",
            json={
                "name": "x",
                "kind": "webhook",
                "home_id": home_b,
                "config": {"url": "https://example.org/hook"},
            },
        )
        assert refused.status_code == 403
        env.target("webhook", home_a, {"url": hook_a.url})
        env.rule("threshold", {"above_c": 8, "for_s": 0}, device_id=dev_b)
        time.sleep(0.5)
        env.send(dev_b, [(time.time() - 1, 12.0)])
        alert_b = wait_alert(env, dev_b, "firing")
        env.send(dev_a, [(time.time() - 1, 12.0)])
        alert_a = wait_alert(env, dev_a, "firing")
        wait_for(lambda: len(hook_a.requests) >= 1, 20, what="A's webhook")
        wait_for(
            lambda: any(e["id"] == alert_a["id"] for e in stream_a.events),
            20,
            what="A's alert on A's stream",
        )

        seen = env.alerts(client=owner_a)
        assert {a["device_id"] for a in seen} == {dev_a}
        assert owner_a.get(f"/api/v1/alerts/{alert_b['id']}").status_code == 404
        assert owner_a.get(f"/api/v1/alerts/{alert_b['id']}/history").status_code == 404
        assert owner_a.post(f"/api/v1/alerts/{alert_b['id']}/acknowledge").status_code == 404
        assert owner_a.get("/api/v1/alerts", params={"device_id": dev_b}).status_code == 404
        assert all(e["home_id"] == home_a for e in stream_a.events)
        assert {i["device_id"] for r in hook_a.requests for i in r.json["alerts"]} == {dev_a}
        assert all(t["home_id"] == home_a for t in owner_a.get("/api/v1/notify-targets").json())
    finally:
        stream_a.close()
        hook_a.close()
        owner_a.close()


def test_backtest_over_stored_history_lists_the_alerts_a_rule_would_raise(env: Env) -> None:
    home = env.home()
    device = env.device(home)
    start = time.time() - 1800
    env.send(device, [(start + t, 12.0 if 300 <= t < 900 else 4.0) for t in range(0, 1500, 10)])
    wait_for(
        lambda: env.admin.get(f"/api/v1/devices/{device}/latest").json()[0]["value"] == 4.0,
        10,
        what="the readings to be stored",
    )
    body = {
        "rule": {"name": "warm", "kind": "threshold", "params": {"above_c": 8, "for_s": 120}},
        "device_id": device,
        "sensor_id": "s1",
        "start": datetime.fromtimestamp(start - 60, UTC).isoformat(),
    }
    resp = env.admin.post("/api/v1/alert-rules/backtest", json=body)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["readings"] == 150
    (alert,) = result["alerts"]
    assert alert["message"] == "Freezer in Garage is 12 °C, above 8 °C for 2 min"
    assert alert["fired_ms"] - alert["started_ms"] == 120_000
    assert alert["resolved_ms"] is not None
    assert env.alerts(device_id=device) == []  # a backtest raises nothing for real


def test_rules_can_be_changed_disabled_and_deleted(env: Env) -> None:
    device = env.device(env.home())
    rule_id = env.rule("threshold", {"above_c": 8}, device_id=device)
    resp = env.admin.patch(
        f"/api/v1/alert-rules/{rule_id}",
        json={"params": {"above_c": 9, "for_s": 30}, "severity": "critical", "enabled": False},
    )
    assert resp.status_code == 200, resp.text
    rule = resp.json()
    assert rule["params"]["above_c"] == 9 and rule["params"]["hysteresis_c"] == 0.5
    assert (rule["severity"], rule["enabled"]) == ("critical", False)
    bad = env.admin.patch(f"/api/v1/alert-rules/{rule_id}", json={"params": {"for_s": 1}})
    assert bad.status_code == 422
    assert env.admin.delete(f"/api/v1/alert-rules/{rule_id}").status_code == 204
    assert env.admin.get(f"/api/v1/alert-rules/{rule_id}").status_code == 404
