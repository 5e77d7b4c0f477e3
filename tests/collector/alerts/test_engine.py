"""The evaluation engine against a real database, fed committed work with a fixed clock."""

from __future__ import annotations

import psycopg

from collector.alerts.engine import AlertEngine
from tests.collector.alerts.support import add_rule, alerts, history, work

T0 = 1_790_000_000_000  # ms; "now" in these tests is just after the data


def feed(engine: AlertEngine, device: str, sensor: str, points: list[tuple[float, float | None]]):
    """Feed (seconds after T0, value) one batch per second, with now = the batch time."""
    changes = 0
    for t_s, value in points:
        t = T0 + int(t_s * 1000)
        changes += engine.process([work(device, [(sensor, t, value)])], now_ms=t + 500)
    return changes


def test_oscillation_inside_the_hysteresis_band_raises_one_alert(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    add_rule(db, "threshold", {"above_c": 30.0, "hysteresis_c": 1.0, "for_s": 10})
    engine = AlertEngine(alerts_database_url)
    series = [(t, 25.0) for t in range(0, 20)]
    series += [(t, 31.0) for t in range(20, 40)]
    # Wobbling between 29.5 and 30.5: across the limit, but never below limit - hysteresis.
    series += [(t, 29.5 if t % 2 else 30.5) for t in range(40, 140)]
    series += [(t, 25.0) for t in range(140, 170)]
    feed(engine, "d1", "s1", series)
    rows = alerts(db)
    assert len(rows) == 1
    alert = rows[0]
    assert alert["state"] == "resolved"
    assert alert["fired_at"].timestamp() * 1000 == T0 + 30_000  # 10 s after going above
    assert history(db, alert["id"]) == [
        (None, "pending"),
        ("pending", "firing"),
        ("firing", "resolved"),
    ]
    assert "back to normal" in alert["message"]


def test_wobble_across_the_limit_before_firing_keeps_one_alert_row(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    add_rule(db, "threshold", {"above_c": 30.0, "hysteresis_c": 1.0, "for_s": 5})
    engine = AlertEngine(alerts_database_url)
    feed(engine, "d1", "s1", [(t, 30.5 if t % 2 else 29.5) for t in range(0, 60)])
    rows = alerts(db)
    assert len(rows) == 1
    assert rows[0]["fired_at"] is None  # never held for 5 s
    assert rows[0]["flap_count"] > 10


def test_threshold_fires_with_a_plain_language_message_and_queues_notifications(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    db.execute("INSERT INTO devices (device_id, name) VALUES ('d1', 'Garage')")
    db.execute("INSERT INTO sensors (device_id, sensor_id, label) VALUES ('d1', 's1', 'Freezer')")
    db.execute("INSERT INTO notify_targets (name, kind, config) VALUES ('hook', 'webhook', '{}')")
    add_rule(db, "threshold", {"above_c": -10.0, "hysteresis_c": 1.0, "for_s": 900})
    engine = AlertEngine(alerts_database_url)
    feed(engine, "d1", "s1", [(t, -18.0) for t in range(0, 60, 10)])
    feed(engine, "d1", "s1", [(t, -4.2) for t in range(60, 961, 60)])
    (alert,) = alerts(db)
    assert alert["state"] == "firing"
    assert alert["message"] == "Freezer in Garage is -4.2 °C, above -10 °C for 15 min"
    outbox = db.execute("SELECT event, payload->>'message' FROM alert_outbox").fetchall()
    assert outbox == [("firing", alert["message"])]


def test_backfill_of_an_ended_condition_is_recorded_without_notification(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    db.execute("INSERT INTO notify_targets (name, kind, config) VALUES ('hook', 'webhook', '{}')")
    add_rule(db, "threshold", {"above_c": 8.0, "hysteresis_c": 0.5, "for_s": 60})
    engine = AlertEngine(alerts_database_url, live_window_s=300)
    hour_ago = T0 - 3_600_000
    readings = [("s1", hour_ago + i * 10_000, 12.0 if 30 <= i < 60 else 5.0) for i in range(120)]
    engine.process([work("d1", readings)], now_ms=T0)
    (alert,) = alerts(db)
    assert alert["state"] == "resolved"
    assert alert["backfill"] is True
    assert alert["notified"] is False
    assert db.execute("SELECT count(*) FROM alert_outbox").fetchone() == (0,)


def test_backfill_ending_in_an_ongoing_condition_notifies_once_caught_up(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    db.execute("INSERT INTO notify_targets (name, kind, config) VALUES ('hook', 'webhook', '{}')")
    add_rule(db, "threshold", {"above_c": 8.0, "hysteresis_c": 0.5, "for_s": 60})
    engine = AlertEngine(alerts_database_url, live_window_s=300)
    start = T0 - 1_200_000
    old = [("s1", start + i * 10_000, 12.0) for i in range(30)]  # 20 to 15 min ago
    engine.process([work("d1", old)], now_ms=T0)
    assert db.execute("SELECT count(*) FROM alert_outbox").fetchone() == (0,)
    recent = [("s1", T0 - 60_000 + i * 10_000, 12.0) for i in range(6)]
    engine.process([work("d1", recent)], now_ms=T0)
    assert db.execute("SELECT event FROM alert_outbox").fetchall() == [("firing",)]


def test_redelivered_readings_are_not_evaluated_twice(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0, "flap_window_s": 0})
    engine = AlertEngine(alerts_database_url)
    batch = work("d1", [("s1", T0, 31.0), ("s1", T0 + 1000, 25.0)])
    engine.process([batch], now_ms=T0 + 2000)
    engine.process([batch], now_ms=T0 + 3000)
    assert len(alerts(db)) == 1


def test_rate_of_change_fires_when_a_freezer_door_is_left_open(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    add_rule(db, "rate", {"rise_c_per_h": 6.0, "window_s": 300, "for_s": 60})
    engine = AlertEngine(alerts_database_url)
    steady = [(t, -18.0 + (0.05 if t % 20 else 0.0)) for t in range(0, 600, 10)]
    warming = [(600 + t, -18.0 + t * 12.0 / 3600) for t in range(0, 900, 10)]  # 12 °C/h
    feed(engine, "d1", "s1", steady + warming)
    (alert,) = alerts(db)
    assert alert["state"] == "firing"
    assert "rising" in alert["message"] and "per hour" in alert["message"]
    closed = [(1500 + t, -7.2 - t * 1.0 / 3600) for t in range(0, 900, 10)]
    feed(engine, "d1", "s1", closed)
    assert alerts(db)[0]["state"] == "resolved"


def test_probe_fault_persisting_fires_and_a_valid_reading_clears(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    add_rule(db, "probe_fault", {"for_s": 30})
    engine = AlertEngine(alerts_database_url)
    feed(engine, "d1", "s1", [(t, 4.0) for t in range(0, 10)])
    feed(engine, "d1", "s1", [(t, None) for t in range(10, 20)])
    assert alerts(db)[0]["state"] == "pending"
    feed(engine, "d1", "s1", [(t, None) for t in range(20, 45)])
    alert = alerts(db)[0]
    assert alert["state"] == "firing"
    assert "only faults (crc)" in alert["message"]
    feed(engine, "d1", "s1", [(45, 4.1)])
    assert alerts(db)[0]["state"] == "resolved"


def test_edge_anomaly_events_raise_an_alert_that_clears_after_a_quiet_period(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    add_rule(db, "anomaly", {"source": "edge", "clear_after_s": 30})
    engine = AlertEngine(alerts_database_url)
    engine.process(
        [work("d1", [("s1", T0, 4.0)], events=[("s1", T0, "anomaly", 9.5)])], now_ms=T0 + 100
    )
    assert alerts(db)[0]["state"] == "firing"
    feed(engine, "d1", "s1", [(t, 4.0) for t in range(1, 40)])
    assert alerts(db)[0]["state"] == "resolved"


def test_server_side_forecaster_flags_a_jump_that_a_heating_cycle_does_not(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    import math

    add_rule(db, "anomaly", {"source": "server", "clear_after_s": 60})
    engine = AlertEngine(alerts_database_url)
    # A smooth daily-like cycle sampled every 10 s: ordinary, however fast it moves.
    cycle = [(t, 20.0 + 3.0 * math.sin(t / 600.0)) for t in range(0, 3000, 10)]
    feed(engine, "d1", "s1", cycle)
    assert alerts(db) == []
    feed(engine, "d1", "s1", [(3000, 35.0)])
    assert alerts(db)[0]["state"] == "firing"


def test_more_specific_rule_with_the_same_name_replaces_the_default(
    db: psycopg.Connection, alerts_database_url: str
) -> None:
    add_rule(db, "threshold", {"above_c": 30.0, "for_s": 0}, name="too warm")
    add_rule(db, "threshold", {"above_c": 50.0, "for_s": 0}, name="too warm", device_id="oven")
    engine = AlertEngine(alerts_database_url)
    engine.process([work("d1", [("s1", T0, 40.0)]), work("oven", [("s1", T0, 40.0)])], now_ms=T0)
    assert [a["device_id"] for a in alerts(db)] == ["d1"]
