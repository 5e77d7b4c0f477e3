"""Nothing acknowledged is lost and nothing is stored twice when processes die or the database
restarts; several collectors share the load through one MQTT shared subscription."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.collector.conftest import count_readings, query
from tests.collector.fleet import make_batches
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for
from tests.support.postgres_server import PrivatePostgres
from tests.support.processes import start_collector

NO_DUPLICATES = (
    "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY device_id, sensor_id, time "
    "HAVING count(*) > 1) d"
)


def publish_in_background(
    port: int, messages: list[tuple[str, bytes]], pace_s: float
) -> threading.Thread:
    def run() -> None:
        client = TestClient(port, client_id="tw-test-publisher")
        for topic, payload in messages:
            client.publish_all([(topic, payload)])
            time.sleep(pace_s)
        client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def fleet_messages(
    devices: int, readings_per_device: int, per_batch: int
) -> list[tuple[str, bytes]]:
    per_device = [
        [
            (f"tw/v1/fleet{d}/readings", b)
            for b in make_batches(f"fleet{d}", readings=readings_per_device, per_batch=per_batch)
        ]
        for d in range(devices)
    ]
    # Interleave devices as a real fleet would.
    return [m for group in zip(*per_device, strict=True) for m in group]


def ingested_by(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        float(v)
        for v in re.findall(
            r'^thermowatch_readings_ingested_total\{transport="mqtt"\} (\S+)$', text, re.M
        )
    )


def test_collector_killed_mid_ingest_loses_and_duplicates_nothing(
    fresh_database_url: str, broker: MosquittoBroker
) -> None:
    messages = fleet_messages(devices=5, readings_per_device=4000, per_batch=200)  # 100 batches
    proc = start_collector(fresh_database_url, broker.port, client_id="tw-test-killed")
    publisher = publish_in_background(broker.port, messages, pace_s=0.02)
    wait_for(lambda: count_readings(fresh_database_url) > 2000, 30, what="ingest under way")
    proc.kill()  # SIGKILL: no chance to flush or acknowledge
    at_kill = count_readings(fresh_database_url)
    time.sleep(0.5)
    restarted = start_collector(
        fresh_database_url,
        broker.port,
        client_id="tw-test-killed",
        mqtt_shared_group=proc.env["THERMOWATCH_MQTT_SHARED_GROUP"],
    )
    try:
        publisher.join(60)
        wait_for(
            lambda: count_readings(fresh_database_url) == 20_000,
            60,
            what="every reading after the restart",
        )
        assert at_kill < 20_000
        assert query(fresh_database_url, NO_DUPLICATES) == [(0,)]
    finally:
        restarted.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres().init().start()
    yield pg
    pg.destroy()


def test_database_restart_during_ingest_loses_nothing_acknowledged(
    private_postgres: PrivatePostgres, broker: MosquittoBroker
) -> None:
    url = private_postgres.create_database()
    proc = start_collector(url, broker.port)
    acks = TestClient(broker.port)
    acks.subscribe("tw/v1/+/ack")
    messages = fleet_messages(devices=4, readings_per_device=3000, per_batch=100)  # 120 batches
    try:
        publisher = publish_in_background(broker.port, messages, pace_s=0.03)
        wait_for(lambda: count_readings(url) > 1000, 30, what="ingest under way")
        private_postgres.stop()
        time.sleep(2)  # publishing goes on while the database is down
        private_postgres.start()
        publisher.join(60)
        wait_for(lambda: count_readings(url) == 12_000, 60, what="every reading after restart")
        acks.wait_received(len(messages), timeout_s=30)
        assert query(url, NO_DUPLICATES) == [(0,)]
        metrics = httpx.get(proc.url + "/metrics").text
        errors = re.search(r"^thermowatch_database_errors_total (\S+)$", metrics, re.M)
        assert errors and float(errors.group(1)) >= 1, "the outage was not noticed"
        assert httpx.get(proc.url + "/readyz").status_code == 200
    finally:
        acks.close()
        proc.stop()


def test_two_collectors_on_one_shared_subscription_split_the_work(
    fresh_database_url: str, broker: MosquittoBroker
) -> None:
    first = start_collector(fresh_database_url, broker.port, name="c1")
    group = first.env["THERMOWATCH_MQTT_SHARED_GROUP"]
    second = start_collector(fresh_database_url, broker.port, name="c2", mqtt_shared_group=group)
    try:
        messages = fleet_messages(devices=10, readings_per_device=1000, per_batch=100)
        client = TestClient(broker.port)
        client.publish_all(messages)
        client.close()
        wait_for(lambda: count_readings(fresh_database_url) == 10_000, 60, what="all readings")
        by_first, by_second = ingested_by(first.url), ingested_by(second.url)
        assert by_first > 0 and by_second > 0, (by_first, by_second)
        assert by_first + by_second == 10_000
        assert query(fresh_database_url, NO_DUPLICATES) == [(0,)]
    finally:
        first.stop()
        second.stop()
