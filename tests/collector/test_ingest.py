"""Ingest end to end: a real collector process, the real broker and TimescaleDB."""

from __future__ import annotations

import asyncio
import json
import math
import time

import aiocoap
import cbor2
import httpx
from aiocoap.numbers.contentformat import ContentFormat

from shared import protocol as p
from shared.protocol import encode_batch
from tests.collector.conftest import count_readings, query
from tests.collector.fleet import make_batches
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for
from tests.support.processes import CollectorProcess, start_collector


async def coap_post(
    port: int, device: str, body: bytes, cf: int = ContentFormat.JSON
) -> aiocoap.Message:
    ctx = await aiocoap.Context.create_client_context()
    try:
        req = aiocoap.Message(
            code=aiocoap.POST,
            payload=body,
            content_format=cf,
            uri=f"coap://127.0.0.1:{port}/tw/v1/{device}/readings",
        )
        return await ctx.request(req).response
    finally:
        await ctx.shutdown()


def test_mixed_batch_keeps_valid_readings_and_rejects_each_bad_one_with_its_reason(
    collector: CollectorProcess, broker: MosquittoBroker, fresh_database_url: str
) -> None:
    now = int(time.time())
    good = [
        ["28-aa", 0, 21.5, 0],
        ["28-aa", 1000, 21.5625, 2],  # clock unsynced: kept, flagged
        ["cpu", 0, 45.0, 0],
    ]
    bad = {
        "malformed_record": ["28-aa", 2000],
        "bad_sensor_id": ["no/slash", 0, 20.0, 0],
        "not_a_number": ["28-aa", 3000, math.nan, 0],
        "bad_value": ["28-aa", 4000, "hot", 0],
        "bad_quality": ["28-aa", 5000, 20.0, 64],
        "bad_fault_reason": ["28-aa", 6000, None, 1, "gremlins"],
        "bad_time": ["28-aa", 10**12, 20.0, 0],
        "out_of_range": ["28-aa", 7000, 1000.0, 0],
        "clock_future": ["28-aa", 3_600_000, 20.0, 0],
    }
    faults = [
        ["28-aa", 8000, 85.0, 0],
        ["28-bb", 0, -127.0, 0],
        ["28-cc", 0, None, 1, "zero_scratchpad"],
    ]
    batch = {
        "v": 1,
        "dev": "mix1",
        "seq": 1,
        "boot": "b1",
        "t0": now - 60,
        "r": good + list(bad.values()) + faults,
    }
    payload = json.dumps(batch, allow_nan=True).encode()

    client = TestClient(broker.port)
    client.subscribe("tw/v1/mix1/ack")
    client.publish_all([("tw/v1/mix1/readings", payload)])
    client.wait_received(1)
    ack = json.loads(client.received()[0])
    client.close()
    assert ack == {"v": 1, "seq": 1, "boot": "b1", "stored": 6, "dup": 0, "rej": len(bad)}

    rows = query(
        fresh_database_url,
        "SELECT sensor_id, value, quality, fault FROM readings ORDER BY sensor_id, time",
    )
    assert rows == [
        ("28-aa", 21.5, 0, None),
        ("28-aa", 21.5625, 2, None),
        ("28-aa", None, 1, "power_on"),
        ("28-bb", None, 1, "disconnected"),
        ("28-cc", None, 1, "zero_scratchpad"),
        ("cpu", 45.0, 0, None),
    ]
    rejects = query(
        fresh_database_url,
        "SELECT reason, device_id, transport, raw FROM ingest_rejects ORDER BY id",
    )
    assert sorted(r[0] for r in rejects) == sorted(bad)
    assert all(r[1] == "mix1" and r[2] == "mqtt" and r[3] for r in rejects)

    # The collector is still up and ingesting.
    assert collector.alive()
    assert httpx.get(collector.url + "/readyz").status_code == 200
    metrics = httpx.get(collector.url + "/metrics").text
    assert 'thermowatch_ingest_rejects_total{reason="out_of_range"} 1.0' in metrics
    assert 'thermowatch_probe_faults_total{fault="power_on"} 1.0' in metrics


def test_batch_level_problems_are_recorded_and_do_not_stop_ingest(
    collector: CollectorProcess, broker: MosquittoBroker, fresh_database_url: str
) -> None:
    now = int(time.time())
    ok = encode_batch("dev-a", 1, "b", now - 5, [("s1", 0, 20.0, 0)])
    claims_other = encode_batch("dev-b", 1, "b", now - 5, [("s1", 0, 20.0, 0)])
    client = TestClient(broker.port)
    client.publish_all(
        [
            ("tw/v1/dev-a/readings", b"{not json"),
            ("tw/v1/dev-a/readings", b'{"v":2,"dev":"dev-a"}'),
            ("tw/v1/dev-a/readings", b"x" * (p.MAX_PAYLOAD_BYTES + 1)),
            ("tw/v1/dev-a/readings", claims_other),  # the topic's device is the identity
            ("tw/v1/dev-a/readings", ok),
        ]
    )
    client.close()
    wait_for(lambda: count_readings(fresh_database_url) == 1, 15, what="the good batch")
    wait_for(lambda: len(query(fresh_database_url, "SELECT 1 FROM ingest_rejects")) == 4, 15)
    reasons = query(fresh_database_url, "SELECT reason, device_id FROM ingest_rejects ORDER BY id")
    assert sorted(reasons) == sorted(
        [
            ("malformed_json", "dev-a"),
            ("unsupported_version", "dev-a"),
            ("oversize", "dev-a"),
            ("device_mismatch", "dev-a"),
        ]
    )
    assert query(fresh_database_url, "SELECT device_id FROM readings") == [("dev-a",)]


def test_unknown_devices_are_refused_when_devices_must_be_registered(
    fresh_database_url: str, broker: MosquittoBroker
) -> None:
    proc = start_collector(fresh_database_url, broker.port, auto_register=False)
    try:
        query(fresh_database_url, "INSERT INTO devices (device_id) VALUES ('known') RETURNING 1")
        now = int(time.time())
        client = TestClient(broker.port)
        client.publish_all(
            [
                (
                    "tw/v1/stranger/readings",
                    encode_batch("stranger", 1, "b", now, [("s", 0, 1.0, 0)]),
                ),
                ("tw/v1/known/readings", encode_batch("known", 1, "b", now, [("s", 0, 1.0, 0)])),
            ]
        )
        client.close()
        wait_for(lambda: count_readings(fresh_database_url, "known") == 1, 15)
        wait_for(lambda: query(fresh_database_url, "SELECT reason FROM ingest_rejects"), 15)
        assert query(fresh_database_url, "SELECT reason, device_id FROM ingest_rejects") == [
            ("unknown_device", "stranger")
        ]
        assert count_readings(fresh_database_url, "stranger") == 0
    finally:
        proc.stop()


def test_same_readings_over_mqtt_coap_and_http_retries_are_stored_exactly_once(
    collector: CollectorProcess, broker: MosquittoBroker, fresh_database_url: str
) -> None:
    batches = make_batches("dup1", readings=10_000, per_batch=500)
    # MQTT, then the whole set again as a re-publish.
    client = TestClient(broker.port)
    client.subscribe("tw/v1/dup1/ack")
    client.publish_all([("tw/v1/dup1/readings", b) for b in batches])
    client.publish_all([("tw/v1/dup1/readings", b) for b in batches])
    client.wait_received(2 * len(batches))
    client.close()
    assert count_readings(fresh_database_url) == 10_000

    async def coap_all() -> list[aiocoap.Message]:
        # CoAP as a retransmitting board would: every batch twice, the second as CBOR.
        out = []
        for b in batches:
            out.append(await coap_post(collector.coap_port, "dup1", b))
            cbor_body = cbor2.dumps(json.loads(b))
            out.append(await coap_post(collector.coap_port, "dup1", cbor_body, ContentFormat.CBOR))
        return out

    responses = asyncio.run(coap_all())
    assert all(r.code == aiocoap.CHANGED for r in responses)
    assert all(json.loads(r.payload)["dup"] == 500 for r in responses)

    with httpx.Client(base_url=collector.url) as http:
        for b in batches:
            for _ in range(2):  # a retry after a lost response
                resp = http.post(
                    "/api/v1/ingest", content=b, headers={"content-type": "application/json"}
                )
                assert resp.status_code == 200
                assert resp.json()["dup"] == 500
    assert count_readings(fresh_database_url) == 10_000
    dupes = query(
        fresh_database_url,
        "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY device_id, sensor_id, time "
        "HAVING count(*) > 1) d",
    )
    assert dupes == [(0,)]


def test_coap_refuses_unsupported_content_and_unknown_paths(collector: CollectorProcess) -> None:
    async def run() -> tuple[aiocoap.Message, aiocoap.Message]:
        ctx = await aiocoap.Context.create_client_context()
        try:
            bad_cf = aiocoap.Message(
                code=aiocoap.POST,
                payload=b"<xml/>",
                content_format=41,
                uri=f"coap://127.0.0.1:{collector.coap_port}/tw/v1/d/readings",
            )
            bad_path = aiocoap.Message(
                code=aiocoap.POST,
                payload=b"{}",
                uri=f"coap://127.0.0.1:{collector.coap_port}/tw/v1/d/x",
            )
            return (await ctx.request(bad_cf).response, await ctx.request(bad_path).response)
        finally:
            await ctx.shutdown()

    cf_resp, path_resp = asyncio.run(run())
    assert cf_resp.code == aiocoap.UNSUPPORTED_CONTENT_FORMAT
    assert path_resp.code == aiocoap.NOT_FOUND


def test_http_ingest_answers_with_the_ack_after_commit(
    collector: CollectorProcess, fresh_database_url: str
) -> None:
    body = encode_batch(
        "h1", 7, "bt", int(time.time()) - 1, [("s", 0, 3.25, 0), ("s", 500, 900.0, 0)]
    )
    resp = httpx.post(collector.url + "/api/v1/ingest", content=body)
    assert resp.status_code == 200
    assert resp.json() == {"v": 1, "seq": 7, "boot": "bt", "stored": 1, "dup": 0, "rej": 1}
    # Committed before the answer: visible at once.
    assert count_readings(fresh_database_url, "h1") == 1
    assert httpx.post(collector.url + "/api/v1/ingest", content=b"[]").status_code == 400
    too_big = httpx.post(collector.url + "/api/v1/ingest", content=b" " * (p.MAX_PAYLOAD_BYTES + 1))
    assert too_big.status_code == 413


def test_coap_interleaved_block_wise_upload_is_answered_4_08_not_a_server_error(
    collector: CollectorProcess,
) -> None:
    from aiocoap.optiontypes import BlockOption

    uri = f"coap://127.0.0.1:{collector.coap_port}/tw/v1/blk/readings"

    async def run() -> aiocoap.Message:
        ctx = await aiocoap.Context.create_client_context()
        try:
            first = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=b"x" * 1024)
            first.opt.block1 = BlockOption.BlockwiseTuple(0, True, 6)
            response = await ctx.request(first, handle_blockwise=False).response
            assert response.code == aiocoap.CONTINUE
            # Block 2 without block 1: a gap, as when two uploads interleave.
            gap = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=b"y" * 1024)
            gap.opt.block1 = BlockOption.BlockwiseTuple(2, False, 6)
            return await ctx.request(gap, handle_blockwise=False).response
        finally:
            await ctx.shutdown()

    assert asyncio.run(run()).code == aiocoap.REQUEST_ENTITY_INCOMPLETE
    assert httpx.get(collector.url + "/healthz").status_code == 200
