"""The outbox drainer, repeats, and several instances sharing alert state — against the real
database, a real webhook receiver and the real broker."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg

from collector.alerts.engine import AlertEngine
from collector.alerts.sweep import SWEEP_LOCK_KEY, Sweeper
from collector.notify.outbox import OutboxDrainer
from tests.collector.alerts.peers import WebhookReceiver
from tests.collector.alerts.support import add_rule, alerts, work
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient

T0 = 1_790_000_000_000


def add_target(conn: psycopg.Connection, kind: str, config: dict, **columns: object) -> int:
    names = ", ".join(["name", "kind", "config", *columns])
    marks = ", ".join(["%s"] * (3 + len(columns)))
    row = conn.execute(
        f"INSERT INTO notify_targets ({names}) VALUES ({marks}) RETURNING id",
        (kind, kind, json.dumps(config), *columns.values()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def fire(engine: AlertEngine, device: str, sensor: str = "s1") -> None:
    now = int(time.time() * 1000)
    engine.process([work(device, [(sensor, now - 1000, 31.0)])], now_ms=now)


def test_due_notifications_of_one_target_go_out_as_one_message(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    hook = WebhookReceiver()
    try:
        add_target(db, "webhook", {"url": hook.url})
        add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0})
        engine = AlertEngine(alerts_database_url)
        fire(engine, "d1")
        fire(engine, "d2")
        assert OutboxDrainer(alerts_database_url).drain_once(db) == 1
    finally:
        hook.close()
    (request,) = hook.requests
    assert sorted(a["device_id"] for a in request.json["alerts"]) == ["d1", "d2"]
    assert request.json["text"].count("\n") == 1  # one line per alert
    assert db.execute("SELECT DISTINCT status FROM alert_outbox").fetchall() == [("sent",)]


def test_quiet_hours_hold_back_all_but_critical(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    hook = WebhookReceiver()
    now = datetime.now(UTC)
    quiet_start = (now - timedelta(hours=1)).time().replace(microsecond=0)
    quiet_end = (now + timedelta(hours=1)).time().replace(microsecond=0)
    try:
        add_target(db, "webhook", {"url": hook.url}, quiet_start=quiet_start, quiet_end=quiet_end)
        add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0}, device_id="d1")
        add_rule(
            db, "threshold", {"above_c": 30.0, "for_s": 0}, device_id="d2", severity="critical"
        )
        engine = AlertEngine(alerts_database_url)
        fire(engine, "d1")
        fire(engine, "d2")
        OutboxDrainer(alerts_database_url).drain_once(db)
    finally:
        hook.close()
    (request,) = hook.requests
    assert [a["device_id"] for a in request.json["alerts"]] == ["d2"]
    held = db.execute(
        "SELECT status, next_attempt_at > now() + interval '30 minutes' FROM alert_outbox "
        "WHERE payload->>'device_id' = 'd1'"
    ).fetchone()
    assert held == ("queued", True)


def test_an_unreachable_receiver_backs_off_and_a_permanent_refusal_fails_at_once(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    hook = WebhookReceiver()
    url = hook.url
    hook.close()  # nothing listens there any more
    add_target(db, "webhook", {"url": url, "timeout_s": 1})
    add_target(db, "smtp", {"host": "127.0.0.1", "port": 1, "sender": "a@b", "to": ["c@d"]})
    add_target(db, "pager", {})  # a channel this version does not know
    add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0})
    fire(AlertEngine(alerts_database_url), "d1")
    OutboxDrainer(alerts_database_url, backoff_base_s=30).drain_once(db)
    rows = db.execute(
        "SELECT t.kind, o.status, o.attempts, o.next_attempt_at > now() + interval '25 seconds', "
        "o.last_error IS NOT NULL FROM alert_outbox o JOIN notify_targets t ON t.id = o.target_id "
        "ORDER BY t.id"
    ).fetchall()
    assert rows == [
        ("webhook", "queued", 1, True, True),
        ("smtp", "queued", 1, True, True),
        ("pager", "failed", 1, False, True),
    ]


def test_mqtt_target_publishes_each_alert_update(
    db: psycopg.Connection, alerts_database_url: str, broker: MosquittoBroker
) -> None:
    add_target(db, "mqtt", {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "tw-test"})
    rule = add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0})
    watcher = TestClient(broker.port)
    try:
        watcher.subscribe("tw-test/#")
        fire(AlertEngine(alerts_database_url), "d1")
        OutboxDrainer(alerts_database_url).drain_once(db)
        topic = f"tw-test/all/d1/s1/{rule}"
        watcher.wait_received(1, topic, timeout_s=10)
        payload = json.loads(watcher.received(topic)[0])
    finally:
        watcher.close()
    assert payload["event"] == "firing" and payload["state"] == "firing"


def test_repeats_while_firing_stop_when_acknowledged(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    add_target(db, "webhook", {"url": "http://127.0.0.1:9/unused"}, repeat_interval_s=1)
    add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0})
    fire(AlertEngine(alerts_database_url), "d1")
    sweeper = Sweeper(alerts_database_url)
    sweeper.sweep(db)
    assert db.execute("SELECT count(*) FROM alert_outbox WHERE event = 'repeat'").fetchone() == (0,)
    db.execute("UPDATE alert_outbox SET created_at = created_at - interval '2 seconds'")
    sweeper.sweep(db)
    assert db.execute("SELECT count(*) FROM alert_outbox WHERE event = 'repeat'").fetchone() == (1,)
    db.execute("UPDATE alert_outbox SET created_at = created_at - interval '2 seconds'")
    db.execute("UPDATE alerts SET state = 'acknowledged'")
    sweeper.sweep(db)
    assert db.execute("SELECT count(*) FROM alert_outbox WHERE event = 'repeat'").fetchone() == (1,)


def test_only_one_instance_sweeps_at_a_time(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    sweeper = Sweeper(alerts_database_url)
    with psycopg.connect(alerts_database_url) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (SWEEP_LOCK_KEY,))
        assert sweeper.sweep(db) is None
    assert sweeper.sweep(db) == 0


def test_two_instances_evaluating_the_same_sensor_raise_one_alert(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    add_rule(db, "threshold", {"above_c": 30.0, "for_s": 5, "flap_window_s": 0})
    engines = [AlertEngine(alerts_database_url) for _ in range(2)]
    errors: list[BaseException] = []

    def run(engine: AlertEngine, offset: int) -> None:
        try:
            for i in range(offset, 60, 2):  # each instance gets every other batch
                t = T0 + i * 1000
                engine.process([work("d1", [("s1", t, 31.0)])], now_ms=t + 100)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e, n)) for n, e in enumerate(engines)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    rows = alerts(db)
    assert len(rows) == 1
    assert rows[0]["state"] == "firing"


def test_an_offline_device_raises_one_alert_not_one_per_quiet_sensor(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    db.execute("INSERT INTO devices (device_id, last_seen) VALUES ('d1', now())")
    db.execute(
        "INSERT INTO sensors (device_id, sensor_id, last_seen) "
        "VALUES ('d1', 's1', now()), ('d1', 's2', now())"
    )
    add_rule(db, "stale", {"expected_interval_s": 60})
    add_rule(db, "offline", {"expected_interval_s": 60})
    sweeper = Sweeper(alerts_database_url)
    now = int(time.time() * 1000)
    assert sweeper.sweep(db, now_ms=now) == 0
    later = now + 600_000  # ten minutes of silence
    assert sweeper.sweep(db, now_ms=later) == 1
    (alert,) = alerts(db)
    assert (alert["kind"], alert["sensor_id"]) == ("offline", "")
    assert alert["message"] == "d1 is offline: nothing heard for 10 min"
