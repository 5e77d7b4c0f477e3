"""Per-home fairness and quotas: a home flooding expensive rules does not delay another home's
alerts, the evaluation backlog is bounded and sheds the heaviest home's oldest work, and the API
refuses rules and targets past a home's quota. Real database, real engine, real collector."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY

from collector.alerts.backlog import split_work
from collector.alerts.engine import AlertEngine
from collector.ingest.work import Work
from tests.collector.alerts.support import add_rule, alerts, work
from tests.support.database import create_database, drop_database
from tests.support.net import wait_for
from tests.support.processes import CollectorProcess, start_collector

T0 = 1_790_000_000_000  # ms


def _home(db: psycopg.Connection, device: str) -> int:
    row = db.execute("INSERT INTO homes (name) VALUES (%s) RETURNING home_id", (device,)).fetchone()
    assert row is not None
    db.execute("INSERT INTO devices (device_id, home_id) VALUES (%s, %s)", (device, row[0]))
    return int(row[0])


def _flood(device: str, batches: int, per_batch: int, start_ms: int, value: float) -> list[Work]:
    """``batches`` batches of ``per_batch`` readings one second apart, oldest first."""
    return [
        work(
            device,
            [("s1", start_ms + (b * per_batch + i) * 1000, value) for i in range(per_batch)],
        )
        for b in range(batches)
    ]


def _shed(reason: str) -> float:
    return REGISTRY.get_sample_value("thermowatch_alert_shed_total", {"reason": reason}) or 0.0


def _last_time_ms(db: psycopg.Connection, device: str) -> int | None:
    row = db.execute(
        "SELECT max(last_time_ms) FROM alert_state WHERE device_id = %s", (device,)
    ).fetchone()
    return None if row is None else row[0]


def test_a_flooded_home_with_expensive_rules_does_not_delay_another_homes_alert(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    home_a, home_b = _home(db, "da"), _home(db, "db")
    for i in range(30):  # the server-side forecaster: the most expensive kind
        add_rule(db, "anomaly", {"source": "server"}, name=f"a{i}", home_id=home_a)
    add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0}, home_id=home_b)
    engine = AlertEngine(alerts_database_url, max_backlog_samples=1_000_000)
    flood = _flood("da", 200, 100, T0, 20.0)  # 20,000 readings, 600,000 rule evaluations
    for group in flood:
        engine.on_commit([group])
    engine.on_commit([work("db", [("s1", T0 + 5_000, 35.0)])])  # committed after all of A's

    engine.run_round(now_ms=T0 + 6_000)

    (alert,) = alerts(db)
    assert (alert["device_id"], alert["state"]) == ("db", "firing")
    # Home A was served its slice of the round, not its backlog.
    waiting = engine.backlog.waiting_by_home()
    assert 19_000 < waiting[home_a] < 20_000
    assert home_b not in waiting
    a_reached = _last_time_ms(db, "da")
    assert a_reached is not None and a_reached < T0 + 1_000_000

    # B keeps being served in every round while A's backlog lasts.
    engine.on_commit([work("db", [("s1", T0 + 10_000, 20.0)])])
    engine.run_round(now_ms=T0 + 11_000)
    assert _last_time_ms(db, "db") == T0 + 10_000
    assert engine.backlog.waiting_by_home()[home_a] > 18_000


def test_the_backlog_bound_sheds_the_heaviest_homes_oldest_work_and_counts_it(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    home_a, home_b = _home(db, "da"), _home(db, "db")
    add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0}, home_id=home_a)
    add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0}, home_id=home_b)
    engine = AlertEngine(alerts_database_url, max_backlog_samples=2_000)
    # The homes of the devices, as the engine learns them in its first round.
    engine.catalog.devices(db, {"da", "db"})
    shed_before = _shed("queue_full")
    # B's one reading is the oldest work of all; A's oldest readings would raise an alert.
    engine.on_commit([work("db", [("s1", T0, 35.0)])])
    hot = _flood("da", 20, 100, T0, 40.0)
    cool = _flood("da", 30, 100, T0 + 2_000_000, 20.0)
    for group in hot + cool:
        engine.on_commit([group])
        assert engine.backlog.samples <= 2_000

    # Each batch past the bound pushed out A's oldest batch, never B's older reading.
    assert engine.backlog.waiting_by_home() == {home_a: 1_900, home_b: 1}
    assert _shed("queue_full") - shed_before == 5_001 - 1_901
    while engine.backlog.samples:
        engine.run_round(now_ms=T0 + 6_000_000)
    # The shed readings were never evaluated: A's hot start raised nothing, B's alert fired, and
    # A's rule state reached its newest reading.
    assert [(a["device_id"], a["state"]) for a in alerts(db)] == [("db", "firing")]
    assert _last_time_ms(db, "da") == T0 + 2_000_000 + 2_999_000


def test_the_engine_thread_fires_another_homes_alert_while_one_home_is_flooded(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    import time

    home_a, home_b = _home(db, "da"), _home(db, "db")
    for i in range(30):
        add_rule(db, "anomaly", {"source": "server"}, name=f"a{i}", home_id=home_a)
    add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0}, home_id=home_b)
    engine = AlertEngine(alerts_database_url, max_backlog_samples=1_000_000)
    engine.start()
    shed_before = _shed("shutdown")
    try:
        now_ms = int(time.time() * 1000)
        for group in _flood("da", 200, 100, now_ms - 30_000_000, 20.0):
            engine.on_commit([group])
        engine.on_commit([work("db", [("s1", now_ms, 35.0)])])
        wait_for(lambda: alerts(db), 30, what="home B's alert")
        assert engine.backlog.waiting_by_home().get(home_a, 0) > 10_000
    finally:
        engine.stop(timeout_s=2)
    assert [(a["device_id"], a["state"]) for a in alerts(db)] == [("db", "firing")]
    # What was still waiting at the stop is dropped and counted, not evaluated for ever.
    assert engine.backlog.samples == 0
    assert _shed("shutdown") - shed_before > 10_000


def test_a_batch_is_split_only_between_measurement_times() -> None:
    batch = work(
        "d1",
        [("s1", 3000, 1.0), ("s1", 1000, 1.0), ("s2", 1000, 2.0), ("s1", 2000, 1.0)],
        events=[("s1", 1000, "anomaly", 9.0)],
    )
    head, rest = split_work(batch, 1)
    assert sorted(r[2] for r in head.rows) == [1000, 1000]
    assert [e.time_ms for e in head.events] == [1000]  # the event stays with its reading
    assert rest is not None and sorted(r[2] for r in rest.rows) == [2000, 3000]
    assert split_work(batch, 10) == (batch, None)


# -- quotas over the API ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorProcess]:
    url = create_database()
    proc = start_collector(
        url,
        None,
        name="quotas",
        alerts_max_rules_per_home=3,
        alerts_max_targets_per_home=2,
        notify_allow_private_targets=True,  # the targets below are never sent to
    )
    try:
        yield proc
    finally:
        proc.stop()
        drop_database(url)


def _owner(admin: httpx.Client, url: str) -> tuple[int, httpx.Client]:
    home = admin.post("/api/v1/homes", json={"name": f"home-{secrets.token_hex(3)}"})
    assert home.status_code == 201, home.text
    home_id = int(home.json()["home_id"])
    username, password = f"owner-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    resp = admin.post(
        "/api/v1/users",
        json={
            "username": username,
            "password": password,
            "role": "homeowner",
            "home_ids": [home_id],
        },
    )
    assert resp.status_code == 201, resp.text
    login = httpx.post(
        url + "/api/v1/auth/login", json={"username": username, "password": password}
    )
    token = login.json()["access_token"]
    return home_id, httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_rules_past_a_homes_quota_are_refused_with_the_limit_named(
    collector: CollectorProcess,
) -> None:
    with collector.admin_client() as admin:
        home, owner = _owner(admin, collector.url)
        other, other_owner = _owner(admin, collector.url)
        other_owner.close()
        with owner:

            def rule(client: httpx.Client, home_id: int | None) -> httpx.Response:
                body = {"name": secrets.token_hex(3), "kind": "threshold", "params": {"above_c": 1}}
                return client.post("/api/v1/alert-rules", json={**body, "home_id": home_id})

            created = [rule(owner, home) for _ in range(3)]
            assert [r.status_code for r in created] == [201, 201, 201]
            refused = rule(owner, home)
            assert refused.status_code == 409
            detail = refused.json()["detail"]
            assert "home" in detail and "3 alert rules" in detail
            assert "THERMOWATCH_ALERTS_MAX_RULES_PER_HOME" in detail
            # The quota protects the other homes whoever adds the rule: admins too.
            assert rule(admin, home).status_code == 409
            # Defaults (no home) and other homes are not counted against this home.
            assert rule(admin, None).status_code == 201
            assert rule(admin, other).status_code == 201
            listed = owner.get("/api/v1/alert-rules").json()
            assert len([r for r in listed if r["home_id"] == home]) == 3
            gone = owner.delete(f"/api/v1/alert-rules/{created[0].json()['id']}")
            assert gone.status_code == 204
            assert rule(owner, home).status_code == 201


def test_notification_targets_past_a_homes_quota_are_refused(collector: CollectorProcess) -> None:
    with collector.admin_client() as admin:
        home, owner = _owner(admin, collector.url)
        with owner:

            def target(client: httpx.Client) -> httpx.Response:
                return client.post(
                    "/api/v1/notify-targets",
                    json={
                        "name": secrets.token_hex(3),
                        "kind": "webhook",
                        "home_id": home,
                        "config": {"url": "http://127.0.0.1:9/hook"},
                    },
                )

            assert [target(owner).status_code for _ in range(2)] == [201, 201]
            refused = target(owner)
            assert refused.status_code == 409
            assert "2 notification targets" in refused.json()["detail"]
            assert target(admin).status_code == 409
            assert len(owner.get("/api/v1/notify-targets").json()) == 2
