"""While the collector is away, the agent keeps at most ``max_inflight_batches`` batches
unacknowledged, event batches included: an outage full of alerts re-sends a few batches on
each ack timeout, not every event batch it produced."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from shared import protocol
from tests.edge.agent_process import DEVICE, start_agent
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for

WINDOW = 3

# A noisy probe with spikes and a sensitive anomaly detector: events on most spool commits.
NOISY = {
    "type": "simulator",
    "id": "sim-0",
    "noise_c": 1.0,
    "spike_probability": 0.3,
    "detect": {"ewma_alpha": 0.3, "anomaly_z": 1.0},
}


def _spooled_events(spool: Path) -> int:
    db = sqlite3.connect(str(spool))
    try:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        db.close()


def test_event_batches_count_against_the_inflight_window_during_an_outage(
    own_broker: MosquittoBroker, tmp_path: Path
) -> None:
    peer = TestClient(own_broker.port)
    peer.subscribe(protocol.topic(DEVICE, "+"))
    spool = tmp_path / "spool.db"
    # No collector: nothing is ever acknowledged.
    agent = start_agent(
        spool,
        own_broker.port,
        sensors=[NOISY],
        sample_period_s=0.05,
        spool_commit_interval_s=0.2,
        max_inflight_batches=WINDOW,
        ack_timeout_s=1,
    )
    events_topic = protocol.topic(DEVICE, protocol.T_EVENTS)
    readings_topic = protocol.topic(DEVICE, protocol.T_READINGS)
    try:

        def sent() -> list[bytes]:
            return peer.received(events_topic) + peer.received(readings_topic)

        # Long enough for several ack timeouts and plenty of new events.
        wait_for(lambda: len(sent()) >= 4 * WINDOW, 30, what="re-sends after ack timeouts")
        wait_for(lambda: _spooled_events(spool) >= 50, 30, what="events waiting in the spool")
        assert agent.alive(), agent.log()
        published = sent()
        seqs = {json.loads(p)["seq"] for p in published}
        assert peer.received(events_topic), "events go first"
        assert len(seqs) <= WINDOW, (sorted(seqs), len(published))
    finally:
        agent.kill()
        peer.close()
