"""The walking skeleton end to end: a simulated probe on the edge agent → MQTT → collector →
TimescaleDB → HTTP API, every part a real process."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from shared.decode import decode_batch
from tests.edge.agent_process import DEVICE, start_agent
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for
from tests.support.processes import start_collector


def test_readings_generated_by_the_agent_are_the_ones_the_api_returns(
    tmp_path: Path, fresh_database_url: str, broker: MosquittoBroker
) -> None:
    # A watcher on the broker sees exactly what the agent generated and sent.
    watcher = TestClient(broker.port)
    watcher.subscribe(f"tw/v1/{DEVICE}/readings")
    collector = start_collector(fresh_database_url, broker.port)
    agent = start_agent(tmp_path / "spool.sqlite3", broker.port, simulate=3, sample_period_s=0.2)
    try:
        wait_for(lambda: len(watcher.received()) >= 5, 30, what="five batches from the agent")
        agent.stop()  # drains: sends what it still holds before exiting
        assert agent.proc is not None and agent.proc.returncode == 0, agent.log()
        sent = {}
        for payload in watcher.received():
            batch = decode_batch(payload)
            assert not batch.errors
            for r in batch.readings:
                sent[(r.sensor_id, r.time_ms)] = r.value
        assert {s for s, _ in sent} == {"sim-0", "sim-1", "sim-2"}

        def api_readings() -> dict[tuple[str, int], float | None]:
            with collector.admin_client() as api:
                page = api.get(
                    f"/api/v1/devices/{DEVICE}/readings", params={"start": "2020-01-01T00:00:00Z"}
                ).json()
            return {
                (r["sensor_id"], round(datetime.fromisoformat(r["time"]).timestamp() * 1000)): r[
                    "value"
                ]
                for r in page["readings"]
            }

        wait_for(lambda: len(api_readings()) >= len(sent), 30, what="every reading in the API")
        assert api_readings() == sent
        device = collector.admin_client().get(f"/api/v1/devices/{DEVICE}").json()
        assert datetime.fromisoformat(device["last_seen"]) <= datetime.now(UTC)
        assert json.loads(watcher.received()[0])["dev"] == DEVICE
    finally:
        agent.kill()
        watcher.close()
        collector.stop()
