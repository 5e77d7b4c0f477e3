"""MQTT bytes, status and last will; CoAP delivery; the relay for boards; live pushed config."""

from __future__ import annotations

import json
import queue
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from edge.config import load_settings
from edge.forward.mqtt import MqttForwarder, client_id_for
from shared import protocol
from tests.edge.agent_process import DEVICE, spool_snapshot, start_agent, stored_readings
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for
from tests.support.processes import start_collector


def test_mqtt_forwarder_publishes_exact_bytes_status_and_last_will(
    own_broker: MosquittoBroker,
) -> None:
    peer = TestClient(own_broker.port)
    peer.subscribe("tw/v1/gw-bytes/#")
    acks: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    settings = load_settings(None, None, device_id="gw-bytes", mqtt_port=own_broker.port)
    fw = MqttForwarder(settings, "b00t", acks.put)
    fw.start()
    try:
        wait_for(lambda: fw.connected, 10, what="forwarder connected")
        # The broker binds the device's account to this id (docs/security.md).
        assert client_id_for("gw-bytes") == "gw-bytes"
        payload = protocol.encode_batch("gw-bytes", 7, "b00t", 1763900000, [("s1", 0, 21.5, 0)])
        assert fw.send(protocol.T_READINGS, payload)
        peer.wait_received(1, "tw/v1/gw-bytes/readings")
        assert peer.received("tw/v1/gw-bytes/readings") == [payload]
        assert peer.received("tw/v1/gw-bytes/status")[0] == protocol.encode_status("online", "b00t")
        # The collector's ack on the device's ack topic reaches the handler, decoded.
        peer.publish_all([("tw/v1/gw-bytes/ack", protocol.encode_ack(7, "b00t", 1, 0, 0))])
        assert acks.get(timeout=10) == {
            "v": 1, "seq": 7, "boot": "b00t", "stored": 1, "dup": 0, "rej": 0,
        }  # fmt: skip
        # The connection dies without a DISCONNECT: the broker publishes the last will.
        fw._stop.set()
        time.sleep(0.5)
        sock = fw.client.socket()
        assert sock is not None
        sock.close()
        offline = protocol.encode_status("offline", "b00t")
        wait_for(lambda: offline in peer.received("tw/v1/gw-bytes/status"), 30, what="last will")
    finally:
        peer.close()


def test_coap_transport_delivers_and_acks(
    own_broker: MosquittoBroker, fresh_database_url: str, tmp_path: Path
) -> None:
    collector = start_collector(fresh_database_url, own_broker.port)
    spool = tmp_path / "spool.db"
    agent = start_agent(
        spool,
        own_broker.port,
        simulate=2,
        sample_period_s=0.2,
        transport="coap",
        coap_url=f"coap://127.0.0.1:{collector.coap_port}",
        shutdown_drain_s=30,
    )
    try:
        wait_for(lambda: len(stored_readings(fresh_database_url)) >= 10, 30, what="rows")
        agent.stop(timeout_s=40)
        final = spool_snapshot(spool)
        assert final["rows"] == [] and final["batches"] == 0, agent.log()[-2000:]
        assert len(stored_readings(fresh_database_url)) == final["ever_added"]
    finally:
        agent.kill()
        collector.stop()


def test_relay_forwards_board_batches_and_acks_the_board_after_commit(
    own_broker: MosquittoBroker, fresh_database_url: str, tmp_path: Path
) -> None:
    local = MosquittoBroker(tmp_path / "local-broker").start()
    board = TestClient(local.port)
    board.subscribe("tw/v1/board1/ack")
    collector = start_collector(fresh_database_url, own_broker.port)
    spool = tmp_path / "spool.db"
    agent = start_agent(spool, own_broker.port, relay={"host": "127.0.0.1", "port": local.port})
    try:
        wait_for(lambda: "relay: listening" in agent.log(), 20, what="relay up")
        t0 = int(time.time())
        batch = protocol.encode_batch(
            "board1",
            3,
            "bb01",
            t0,
            [("s1", 0, 4.5, 0), ("s1", 1000, None, 1, "crc"), ("s1", 2000, 9.0, 0)],
            [("s1", 0, protocol.EV_THRESHOLD_HIGH, 4.5, 4.0)],
        )
        # One record a board could not have meant: refused with a reason, the rest kept.
        batch = batch.replace(b'["s1",2000,9.0,0]', b'["s1",2000,"x",0]')
        board.publish_all([("tw/v1/board1/readings", batch)])
        board.wait_received(1, "tw/v1/board1/ack", timeout_s=20)
        ack = json.loads(board.received("tw/v1/board1/ack")[0])
        assert (ack["seq"], ack["boot"], ack["stored"], ack["rej"]) == (3, "bb01", 2, 1)
        wait_for(lambda: len(stored_readings(fresh_database_url)) == 2, 30, what="relayed rows")
        rows = stored_readings(fresh_database_url)
        assert [(r[0], r[2], r[4]) for r in rows] == [
            ("board1:s1", 4.5, None),
            ("board1:s1", None, "crc"),
        ]
        with psycopg.connect(fresh_database_url) as conn:
            events = conn.execute(
                "SELECT sensor_id, kind FROM device_events WHERE device_id = %s", (DEVICE,)
            ).fetchall()
        assert events == [("board1:s1", protocol.EV_THRESHOLD_HIGH)]
    finally:
        agent.kill()
        collector.stop()
        board.close()
        local.stop()


def test_pushed_config_applies_live_persists_and_events_go_upstream(
    own_broker: MosquittoBroker, fresh_database_url: str, tmp_path: Path
) -> None:
    collector = start_collector(fresh_database_url, own_broker.port)
    spool = tmp_path / "spool.db"
    agent = start_agent(spool, own_broker.port, simulate=1, sample_period_s=0.2)
    admin = TestClient(own_broker.port)
    try:
        wait_for(lambda: len(stored_readings(fresh_database_url)) >= 3, 30, what="rows")
        # sim-0 sits near 18 °C: a 10 °C high limit fires at once.
        config = {"v": 1, "sensors": {"sim-0": {"high_c": 10.0, "min_duration_s": 0}}}
        admin.client.publish(
            protocol.topic(DEVICE, protocol.T_CONFIG), json.dumps(config), qos=1, retain=True
        )

        def events() -> list[tuple[str, str]]:
            with psycopg.connect(fresh_database_url) as conn:
                return conn.execute(
                    "SELECT sensor_id, kind FROM device_events WHERE device_id = %s", (DEVICE,)
                ).fetchall()

        wait_for(events, 30, what="threshold event stored")
        assert events() == [("sim-0", protocol.EV_THRESHOLD_HIGH)]
        agent.stop()
        db = sqlite3.connect(str(spool))
        stored = db.execute("SELECT value FROM meta WHERE key = 'pushed_config'").fetchone()
        detectors = db.execute("SELECT value FROM meta WHERE key = 'detectors'").fetchone()
        db.close()
        assert json.loads(stored[0])["sensors"]["sim-0"]["high_c"] == 10.0
        assert json.loads(detectors[0])["sim-0"]["threshold"][0] == 1  # state: high
        status = subprocess.run(
            [sys.executable, "-m", "edge", "status", "--spool", str(spool), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(status.stdout)
        assert report["agent"]["sensors"]["sim-0"]["detectors"]["threshold"][0] == 1
        assert report["dropped_total"] == 0
    finally:
        agent.kill()
        admin.close()
        collector.stop()
