"""MQTT ingest under hostile or broken conditions: a flood of bad messages, a database outage
longer than the keepalive, a member of the shared group that dies. Another device's batches
keep being stored and acknowledged, and nothing a device may re-send is lost."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from shared.protocol import encode_batch, topic
from tests.collector.auth.stack import MqttProbe, Stack, secured_stack, wait
from tests.collector.conftest import count_readings, query
from tests.collector.fleet import make_batches
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for
from tests.support.postgres_server import PrivatePostgres
from tests.support.processes import start_collector

# Small, so that leaking a handful of in-flight slots per hundred bad messages stops ingest.
RECEIVE_MAXIMUM = 20


def _hostile_payloads(device_id: str) -> list[bytes]:
    head = f'{{"v":1,"dev":"{device_id}","seq":'
    t0 = int(time.time())
    variants = [
        bytes(range(256)),  # not UTF-8, not JSON, NUL bytes (text columns refuse them)
        b"\xff\xfe" + b"\x00" * 100,
        head.encode() + b"1",  # truncated
        # Nested past the interpreter's recursion limit, still under the payload limit.
        head.encode() + b'1,"boot":"b","t0":1,"r":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        head.encode() + b"9" * 400 + b',"boot":"b","t0":1,"r":[]}',  # past float range
        head.encode() + b"9" * 5_000 + b',"boot":"b","t0":1,"r":[]}',  # past int() digit limit
        head.encode() + f'1,"boot":"b","t0":{t0},"r":[[["s1"],0,20.5,0]]}}'.encode(),
        head.encode() + f'1,"boot":"b","t0":{t0},"r":[[{{"a":1}},0,20.5,0]]}}'.encode(),
        head.encode() + f'1,"boot":"b","t0":{t0},"r":[["s1",0,1e999,0]]}}'.encode(),
        b"[]",
        b"",
    ]
    return variants * 30  # 330 messages


@pytest.fixture(scope="module")
def hostile_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with secured_stack(
        tmp_path_factory.mktemp("hostile-mqtt"), mqtt_receive_maximum=RECEIVE_MAXIMUM
    ) as stack:
        yield stack


def _device(stack: Stack, device_id: str) -> MqttProbe:
    bundle = stack.provision(device_id)
    probe = MqttProbe(stack.broker.port, bundle["mqtt"]["username"], bundle["mqtt"]["password"])
    probe.connect()
    probe.client.subscribe(topic(device_id, "ack"), qos=1)
    wait(lambda: probe.suback, "SUBACK")
    return probe


def test_a_flood_of_bad_messages_does_not_stop_another_devices_acks(
    hostile_stack: Stack,
) -> None:
    stack = hostile_stack
    attacker, canary = _device(stack, "hostile-1"), _device(stack, "canary-1")
    payloads = _hostile_payloads("hostile-1")
    infos = [
        attacker.client.publish(topic("hostile-1", kind), payload, qos=1)
        for kind in ("readings", "events")
        for payload in payloads
    ]
    wait_for(
        lambda: all(i.mid in attacker.puback for i in infos), 60, what="the broker took them all"
    )
    # Every bad message was answered, so none holds an in-flight slot: handled (and recorded
    # as a reject), or, when the intake was full, acknowledged unhandled (the device gets no
    # ack and would re-send).
    sent = len(infos)
    assert sent > 30 * RECEIVE_MAXIMUM
    answered = wait_for(
        lambda: (m := _mqtt_counts(stack.url))["batches"] + m["refused"] >= sent and m,
        60,
        what="an answer to every bad message",
    )
    assert answered["batches"] > 0

    def rejects() -> tuple[int, int]:
        row = query(
            stack.database_url,
            "SELECT count(*), count(*) FILTER (WHERE reason = '') FROM ingest_rejects "
            "WHERE device_id = %s",
            ("hostile-1",),
        )[0]
        return int(row[0]), int(row[1])

    # Each handled message left at least one reject, with a reason, once committed.
    wait_for(lambda: rejects()[0] >= answered["batches"], 30, what="the rejects committed")
    assert rejects()[1] == 0
    canary.client.publish(
        topic("canary-1", "readings"),
        encode_batch("canary-1", 1, "b0", int(time.time()), [("s1", 0, 21.5, 0)]),
        qos=1,
    )
    ack = wait(lambda: canary.messages, "the canary's ack", timeout_s=10)
    assert b'"stored":1' in ack[0].payload
    assert count_readings(stack.database_url, "canary-1") == 1
    assert httpx.get(stack.url + "/readyz").status_code == 200
    attacker.close()
    canary.close()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres().init().start()
    yield pg
    pg.destroy()


KEEPALIVE_S = 3


def test_a_database_outage_longer_than_the_keepalive_keeps_the_mqtt_session(
    private_postgres: PrivatePostgres, own_broker: MosquittoBroker
) -> None:
    url = private_postgres.create_database()
    client_id = "tw-test-outage"
    proc = start_collector(url, own_broker.port, client_id=client_id, mqtt_keepalive_s=KEEPALIVE_S)
    acks = TestClient(own_broker.port)
    acks.subscribe("tw/v1/+/ack")
    publisher = TestClient(own_broker.port)
    try:
        before = [("tw/v1/early/readings", b) for b in make_batches("early", readings=400)]
        publisher.publish_all(before)
        wait_for(lambda: count_readings(url) == 400, 30, what="readings before the outage")

        private_postgres.stop()
        # Devices the collector has not seen yet: it has to ask the database about each.
        during = [
            (f"tw/v1/new{d}/readings", b)
            for d in range(5)
            for b in make_batches(f"new{d}", readings=400, per_batch=100)
        ]
        publisher.publish_all(during)
        mqtt_ready: list[bool] = []
        deadline = time.monotonic() + 4 * KEEPALIVE_S  # the broker gives up after 1.5
        while time.monotonic() < deadline:
            checks = httpx.get(proc.url + "/readyz", timeout=5).json()["checks"]
            mqtt_ready.append(checks["mqtt"])
            time.sleep(0.5)
        assert not any(m.startswith("Client " + client_id) for m in _broker_news(own_broker))
        assert all(mqtt_ready), mqtt_ready

        private_postgres.start()
        wait_for(lambda: count_readings(url) == 2400, 20, what="ingest after the outage")
        acks.wait_received(len(before) + len(during), timeout_s=20)
        assert "MQTT disconnected" not in proc.log()
        assert not any(m.startswith("Client " + client_id) for m in _broker_news(own_broker))
        wait_for(lambda: httpx.get(proc.url + "/readyz").status_code == 200, 20, what="ready again")
    finally:
        acks.close()
        publisher.close()
        proc.stop()


def _broker_news(broker: MosquittoBroker) -> list[str]:
    """The broker's log lines about clients after they connected (disconnects, timeouts)."""
    lines = []
    for line in broker.log().splitlines():
        text = line.split(": ", 1)[-1]
        if text.startswith("Client ") and "connected from" not in text:
            lines.append(text)
    return lines


def _metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _mqtt_counts(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    batches = re.findall(r'^thermowatch_batches_total\{transport="mqtt"\} (\S+)$', text, re.M)
    return {
        "batches": sum(float(v) for v in batches),
        "refused": _metric(text, "thermowatch_mqtt_refused_total"),
    }


def _ingested_by(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        float(v)
        for v in re.findall(
            r'^thermowatch_readings_ingested_total\{transport="mqtt"\} (\S+)$', text, re.M
        )
    )


SESSION_EXPIRY_S = 3


def test_a_collector_gone_longer_than_the_session_expiry_stops_holding_load(
    fresh_database_url: str, own_broker: MosquittoBroker
) -> None:
    url = fresh_database_url
    survivor = start_collector(url, own_broker.port, name="c1", mqtt_session_expiry_s=120)
    group = survivor.env["THERMOWATCH_MQTT_SHARED_GROUP"]
    gone = start_collector(
        url,
        own_broker.port,
        name="c2",
        mqtt_shared_group=group,
        mqtt_session_expiry_s=SESSION_EXPIRY_S,
    )
    publisher = TestClient(own_broker.port)
    try:
        warmup = [
            (f"tw/v1/w{d}/readings", b)
            for d in range(4)
            for b in make_batches(f"w{d}", readings=100, per_batch=10)
        ]
        publisher.publish_all(warmup)
        wait_for(lambda: count_readings(url) == 400, 30, what="both collectors working")
        assert _ingested_by(gone.url) > 0, "the shared subscription did not split the load"

        gone.kill()  # no DISCONNECT: the broker keeps its session until it expires
        expired = f"Expiring client {gone.env['THERMOWATCH_MQTT_CLIENT_ID']}"
        wait_for(
            lambda: expired in own_broker.log(),
            SESSION_EXPIRY_S + 20,
            what="the broker expired the dead collector's session",
        )
        stored_before = _ingested_by(survivor.url)
        messages = [
            (f"tw/v1/d{d}/readings", b)
            for d in range(10)
            for b in make_batches(f"d{d}", readings=200, per_batch=20)
        ]
        publisher.publish_all(messages)
        wait_for(lambda: count_readings(url) == 400 + 2000, 30, what="every reading stored")
        assert _ingested_by(survivor.url) - stored_before == 2000
    finally:
        publisher.close()
        survivor.stop()
        gone.stop()
