"""The done-when scenarios: real Mosquitto, the real collector, TimescaleDB, the agent process.

The broker outage lasts ``THERMOWATCH_TEST_OUTAGE_S`` seconds: three minutes by default, a real
Wi-Fi or broker outage (a quick local run may set it lower). Exactly-once is checked by count:
the spool's AUTOINCREMENT counter says how many readings ever reached the spool, and after a
drained shutdown the database must hold exactly that many (minus reported drops), each
(sensor, time) once.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared import protocol
from shared.decode import decode_batch
from tests.edge.agent_process import (
    DEVICE,
    rss_mb,
    spool_snapshot,
    start_agent,
    stored_readings,
)
from tests.edge.sysfs import W1Bus
from tests.support.broker import MosquittoBroker
from tests.support.net import wait_for
from tests.support.processes import start_collector

OUTAGE_S = float(os.environ.get("THERMOWATCH_TEST_OUTAGE_S", "180"))


def _stop_drained(agent, spool: Path) -> dict:  # type: ignore[no-untyped-def]
    agent.stop(timeout_s=60)
    assert agent.proc is not None and agent.proc.returncode == 0, agent.log()
    snap = spool_snapshot(spool)
    assert snap["rows"] == [] and snap["batches"] == 0, agent.log()[-3000:]
    return snap


def _assert_in_order(watcher: Watcher) -> None:
    """Each sensor's readings were published in measurement order (resent batches aside)."""
    seen: set[int] = set()
    last: dict[str, int] = defaultdict(lambda: -1)
    for payload in watcher.received(protocol.topic(DEVICE, protocol.T_READINGS)):
        batch = decode_batch(payload)
        if batch.seq in seen:
            continue
        seen.add(batch.seq)
        for r in batch.readings:
            assert r.time_ms > last[r.sensor_id], (r, last[r.sensor_id])
            last[r.sensor_id] = r.time_ms
    assert seen


class Watcher:
    """Records everything the agent publishes. Its session is persistent (MQTT 3.1.1,
    clean_session off, QoS 1), so the broker keeps its subscription and queues messages for it
    across the broker restart: it misses nothing, whoever reconnects first."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="edge-test-watcher",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(protocol.topic(DEVICE, "#"), 1)
        self.client.loop_start()

    def received(self, topic: str) -> list[bytes]:
        return [payload for t, payload in list(self.messages) if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watcher(own_broker: MosquittoBroker):  # type: ignore[no-untyped-def]
    client = Watcher(own_broker.port)
    wait_for(client.client.is_connected, 10, what="watcher connected")
    yield client
    client.close()


@pytest.mark.timeout(OUTAGE_S + 300)
def test_broker_outage_every_reading_stored_exactly_once_in_order(
    own_broker: MosquittoBroker, fresh_database_url: str, tmp_path: Path, watcher: Watcher
) -> None:
    collector = start_collector(fresh_database_url, own_broker.port)
    spool = tmp_path / "spool.db"
    agent = start_agent(
        spool, own_broker.port, simulate=4, sample_period_s=0.1, shutdown_drain_s=60
    )
    try:
        wait_for(lambda: len(stored_readings(fresh_database_url)) >= 40, 30, what="first rows")
        own_broker.stop()
        time.sleep(OUTAGE_S)
        during = spool_snapshot(spool)
        assert len(during["rows"]) >= 4 * 10 * OUTAGE_S * 0.8  # the backlog is on disk
        own_broker.start()
        wait_for(lambda: watcher.client.is_connected(), 20, what="watcher back")
        time.sleep(3)  # sampling goes on while the backlog drains
        assert agent.alive()
        final = _stop_drained(agent, spool)
        rows = stored_readings(fresh_database_url)
        assert final["dropped"] == 0
        assert len(rows) == final["ever_added"]
        assert len({(r[0], r[1]) for r in rows}) == len(rows)
        per_sensor: dict[str, list[int]] = defaultdict(list)
        for sensor, time_ms, *_ in rows:
            per_sensor[sensor].append(time_ms)
        assert sorted(per_sensor) == ["sim-0", "sim-1", "sim-2", "sim-3"]
        for times in per_sensor.values():
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert max(gaps) < 1000  # no hole where the outage was
        _assert_in_order(watcher)
    finally:
        agent.kill()
        collector.stop()


def test_sigkill_mid_run_loses_nothing_spooled_and_duplicates_nothing(
    own_broker: MosquittoBroker, fresh_database_url: str, tmp_path: Path
) -> None:
    collector = start_collector(fresh_database_url, own_broker.port)
    spool = tmp_path / "spool.db"
    agent = start_agent(spool, own_broker.port, simulate=4, sample_period_s=0.1)
    try:
        wait_for(lambda: len(stored_readings(fresh_database_url)) >= 40, 30, what="first rows")
        # Stop the collector first so that batches are sent but not acknowledged at the kill.
        collector.stop()
        wait_for(lambda: spool_snapshot(spool)["batches"] >= 2, 20, what="unacked batches")
        agent.kill()
        at_kill = spool_snapshot(spool)
        assert at_kill["batches"] > 0 and at_kill["rows"]
        collector = start_collector(fresh_database_url, own_broker.port)
        agent = start_agent(
            spool, own_broker.port, simulate=4, sample_period_s=0.1, shutdown_drain_s=60
        )
        time.sleep(3)
        final = _stop_drained(agent, spool)
        rows = stored_readings(fresh_database_url)
        stored = {(r[0], r[1]) for r in rows}
        assert set(at_kill["rows"]) <= stored  # everything that was in the spool arrived
        assert len(rows) == len(stored) == final["ever_added"]  # and nothing else, once
    finally:
        agent.kill()
        collector.stop()


def test_small_spool_drops_oldest_and_reports_the_exact_count(
    own_broker: MosquittoBroker, fresh_database_url: str, tmp_path: Path, watcher: Watcher
) -> None:
    collector = start_collector(fresh_database_url, own_broker.port)
    spool = tmp_path / "spool.db"
    agent = start_agent(
        spool,
        own_broker.port,
        simulate=4,
        sample_period_s=0.1,
        spool_max_readings=200,
        shutdown_drain_s=60,
    )
    try:
        wait_for(lambda: len(stored_readings(fresh_database_url)) >= 40, 30, what="first rows")
        own_broker.stop()
        rss_before = rss_mb(agent.proc.pid)  # type: ignore[union-attr]
        time.sleep(10)
        during = spool_snapshot(spool)
        assert during["dropped"] > 0
        # The cap holds on disk (plus at most one commit interval of new rows) ...
        assert len(during["rows"]) <= 200 + 4 * 10
        # ... and memory does not grow with the outage.
        assert rss_mb(agent.proc.pid) - rss_before < 5  # type: ignore[union-attr]
        own_broker.start()
        wait_for(lambda: watcher.client.is_connected(), 20, what="watcher back")
        time.sleep(2)
        final = _stop_drained(agent, spool)
        rows = stored_readings(fresh_database_url)
        assert len(rows) == final["ever_added"] - final["dropped"]
        statuses = [
            json.loads(p) for p in watcher.received(protocol.topic(DEVICE, protocol.T_STATUS))
        ]
        reported = [s["dropped"] for s in statuses if "dropped" in s]
        assert reported[-1] == final["dropped"]  # upstream heard the exact count
    finally:
        agent.kill()
        collector.stop()


def test_sysfs_probe_faults_are_stored_flagged_and_the_agent_keeps_running(
    own_broker: MosquittoBroker, fresh_database_url: str, tmp_path: Path
) -> None:
    bus = W1Bus(tmp_path / "w1")
    good, crc, power_on, gone = (
        "28-000000000001",
        "28-000000000002",
        "28-000000000003",
        "28-000000000004",
    )
    bus.set_celsius(good, 21.5)
    bus.set_crc_failure(crc)
    bus.set_power_on(power_on)
    bus.set_disconnected(gone)
    sensors = [
        {"type": "ds18b20", "id": rom, "w1_devices": str(tmp_path / "w1")}
        for rom in (good, crc, power_on, gone)
    ]
    collector = start_collector(fresh_database_url, own_broker.port)
    spool = tmp_path / "spool.db"
    agent = start_agent(
        spool, own_broker.port, sensors=sensors, sample_period_s=0.2, shutdown_drain_s=30
    )
    try:
        wait_for(lambda: len(stored_readings(fresh_database_url)) >= 12, 30, what="rows")
        bus.remove(gone)  # the probe vanishes from the bus
        time.sleep(1.5)
        bus.set_zero_scratchpad(good)
        time.sleep(1.0)
        assert agent.alive()
        _stop_drained(agent, spool)
        rows = stored_readings(fresh_database_url)
        by_sensor: dict[str, list[tuple]] = defaultdict(list)  # type: ignore[type-arg]
        for row in rows:
            by_sensor[row[0]].append(row)
        assert {r[4] for r in by_sensor[crc]} == {protocol.FAULT_CRC}
        assert {r[4] for r in by_sensor[power_on]} == {protocol.FAULT_POWER_ON}
        assert {r[4] for r in by_sensor[gone]} == {
            protocol.FAULT_DISCONNECTED,
            protocol.FAULT_MISSING,
        }
        assert {r[4] for r in by_sensor[good]} == {None, protocol.FAULT_ZERO_SCRATCHPAD}
        for sensor in (crc, power_on, gone):
            assert all(r[2] is None and r[3] & protocol.Q_PROBE_FAULT for r in by_sensor[sensor])
        assert {r[2] for r in by_sensor[good] if r[4] is None} == {21.5}
    finally:
        agent.kill()
        collector.stop()
