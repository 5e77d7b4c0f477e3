"""A provisioning bundle made through the API is all a simulated agent needs to connect and
ingest over MQTT, HTTP and CoAP; device tokens are checked on HTTP and CoAP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiocoap
import httpx

from shared.protocol import encode_batch, topic
from tests.collector.auth.stack import MqttProbe, Stack, readings_count, wait


def _batch(device_id: str, seq: int, sensor: str = "s1") -> bytes:
    return encode_batch(device_id, seq, "c0ffee01", int(time.time()), [(sensor, 0, -18.5, 0)])


def _coap_post(url: str, payload: bytes) -> aiocoap.Message:
    async def post() -> aiocoap.Message:
        context = await aiocoap.Context.create_client_context()
        try:
            request = aiocoap.Message(code=aiocoap.POST, uri=url, payload=payload)
            return await asyncio.wait_for(context.request(request).response, 10)
        finally:
            await context.shutdown()

    return asyncio.run(post())


def test_an_agent_with_only_the_bundle_ingests_over_mqtt_http_and_coap(stack: Stack) -> None:
    bundle: dict[str, Any] = stack.provision(
        "agent-1", sensors=[{"sensor_id": "s1", "label": "Freezer"}]
    )
    assert set(bundle) == {"device_id", "mqtt", "coap", "http", "sensors", "config"}
    mqtt_cfg = bundle["mqtt"]
    agent = MqttProbe(mqtt_cfg["port"], mqtt_cfg["username"], mqtt_cfg["password"]).connect()
    agent.client.subscribe(topic(bundle["device_id"], "ack"), qos=1)
    wait(lambda: agent.suback, "SUBACK")
    agent.client.publish(topic("agent-1", "readings"), _batch("agent-1", 1), qos=1)
    wait(lambda: any(m.topic.endswith("/ack") for m in agent.messages), "MQTT ack")
    agent.close()

    http = bundle["http"]
    resp = httpx.post(
        http["url"],
        content=_batch("agent-1", 2, "s2"),
        headers={"Authorization": f"Bearer {http['token']}", "content-type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["stored"] == 1

    coap = bundle["coap"]
    url = f"{coap['url']}/{topic('agent-1', 'readings')}?t={coap['token']}"
    reply = _coap_post(url, _batch("agent-1", 3, "s3"))
    assert reply.code == aiocoap.CHANGED, reply
    assert readings_count(stack.database_url, "agent-1") == 3


def test_http_and_coap_refuse_missing_wrong_and_foreign_tokens(stack: Stack) -> None:
    mine = stack.provision("token-1")
    stack.provision("token-2")
    url = mine["http"]["url"]
    body = _batch("token-1", 1)
    assert httpx.post(url, content=body).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert httpx.post(url, content=body, headers=bad).status_code == 401
    # A valid token for token-1 carrying a batch of token-2: refused, nothing stored.
    own = {"Authorization": f"Bearer {mine['http']['token']}"}
    assert httpx.post(url, content=_batch("token-2", 1), headers=own).status_code == 403
    assert readings_count(stack.database_url, "token-2") == 0

    base = mine["coap"]["url"]
    assert _coap_post(f"{base}/{topic('token-1', 'readings')}", body).code == aiocoap.UNAUTHORIZED
    wrong = f"{base}/{topic('token-1', 'readings')}?t=nope"
    assert _coap_post(wrong, body).code == aiocoap.UNAUTHORIZED
    foreign = f"{base}/{topic('token-2', 'readings')}?t={mine['coap']['token']}"
    assert _coap_post(foreign, _batch("token-2", 1)).code == aiocoap.FORBIDDEN
    assert readings_count(stack.database_url, "token-2") == 0


def test_a_decommissioned_device_is_refused_and_its_data_kept(stack: Stack) -> None:
    bundle = stack.provision("retired-1")
    headers = {"Authorization": f"Bearer {bundle['http']['token']}"}
    first = httpx.post(bundle["http"]["url"], content=_batch("retired-1", 1), headers=headers)
    assert first.status_code == 200
    with stack.admin() as admin:
        resp = admin.post("/api/v1/devices/retired-1/decommission")
        assert resp.json()["status"] == "decommissioned"
        # The data stays readable.
        assert len(admin.get("/api/v1/devices/retired-1/readings").json()["readings"]) == 1
    later = httpx.post(bundle["http"]["url"], content=_batch("retired-1", 2), headers=headers)
    assert later.status_code == 401
    assert readings_count(stack.database_url, "retired-1") == 1
