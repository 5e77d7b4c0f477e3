"""What a device reports about itself in its retained status reaches its health page."""

from __future__ import annotations

import time

import httpx

from shared.protocol import encode_batch
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for
from tests.support.processes import CollectorProcess


def test_spool_depth_and_dropped_readings_reported_by_a_device_show_in_its_health(
    collector: CollectorProcess, api: httpx.Client, broker: MosquittoBroker
) -> None:
    body = encode_batch("rep1", 1, "b1", int(time.time()), [("s1", 0, 20.5, 0)])
    assert httpx.post(collector.url + "/api/v1/ingest", content=body).status_code == 200
    device = TestClient(broker.port)
    status = b'{"v":1,"state":"online","boot":"b1","dropped":7,"spool":3,"clock_synced":true,'
    device.client.publish("tw/v1/rep1/status", status + b'"extra":"ignored"}', qos=1, retain=True)

    def report() -> dict | None:  # type: ignore[type-arg]
        return api.get("/api/v1/devices/rep1/health").json()["report"]

    got = wait_for(report, 20, what="the device's report")
    assert got["online"] is True
    assert (got["dropped"], got["spool"], got["clock_synced"], got["boot"]) == (7, 3, True, "b1")
    assert "extra" not in got
    # The last will says only "offline": the device's last report stays.
    device.client.publish("tw/v1/rep1/status", b'{"v":1,"state":"offline"}', qos=1, retain=True)
    wait_for(lambda: report()["online"] is False, 20, what="offline")  # type: ignore[index]
    assert report()["dropped"] == 7  # type: ignore[index]
    device.close()
