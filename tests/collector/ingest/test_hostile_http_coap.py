"""HTTP and CoAP ingest under hostile content from one provisioned device, against a collector in
production mode: each class of bad input is acknowledged with its rejects, or refused with a
4xx / 4.xx, never a 5xx; the reject is recorded with its reason, the valid readings of the batch
are stored, another device's batch sent right after is acknowledged, and the collector stays
ready."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiocoap
import cbor2
import httpx
import pytest
from aiocoap.numbers.contentformat import ContentFormat

from shared.protocol import encode_batch, topic
from tests.collector.auth.stack import Stack, secured_stack
from tests.collector.conftest import query
from tests.support.net import wait_for

ATTACKER, CANARY = "hostile-a", "canary-b"
BIG = "9" * 400  # beyond a float's range
HUGE = "9" * 5000  # beyond Python's limit for converting digits to an int
_seq = itertools.count(1)


@dataclass(frozen=True)
class Sent:
    status: int  # HTTP status, or the CoAP code as class * 100 + detail (2.04 -> 204)
    body: bytes


@dataclass(frozen=True)
class Device:
    device_id: str
    token: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with secured_stack(tmp_path_factory.mktemp("hostile-http-coap")) as s:
        yield s


@pytest.fixture(scope="module")
def devices(stack: Stack) -> dict[str, Device]:
    return {
        name: Device(name, stack.provision(name)["http"]["token"]) for name in (ATTACKER, CANARY)
    }


def _send_http(stack: Stack, device: Device, body: bytes, body_format: str) -> Sent:
    resp = httpx.post(
        stack.url + "/api/v1/ingest",
        content=body,
        headers={
            "Authorization": f"Bearer {device.token}",
            "content-type": f"application/{body_format}",
        },
        timeout=10,
    )
    return Sent(resp.status_code, resp.content)


def _send_coap(stack: Stack, device: Device, body: bytes, body_format: str) -> Sent:
    async def post() -> aiocoap.Message:
        context = await aiocoap.Context.create_client_context()
        try:
            request = aiocoap.Message(
                code=aiocoap.POST,
                payload=body,
                content_format=ContentFormat.CBOR if body_format == "cbor" else ContentFormat.JSON,
                uri=f"coap://127.0.0.1:{stack.collector.coap_port}/"
                f"{topic(device.device_id, 'readings')}?t={device.token}",
            )
            return await asyncio.wait_for(context.request(request).response, 10)
        finally:
            await context.shutdown()

    reply = asyncio.run(post())
    return Sent(reply.code.class_ * 100 + (int(reply.code) & 0x1F), reply.payload)


SENDERS: dict[str, Callable[[Stack, Device, bytes, str], Sent]] = {
    "http": _send_http,
    "coap": _send_coap,
}


def _json(
    device_id: str,
    batch_seq: int,
    t0: int,
    records: list[str],
    events: list[str] | None = None,
    **env: str,
) -> bytes:
    """A batch as JSON text built by hand, so it can hold what json.dumps would not write."""
    fields = {"v": "1", "dev": f'"{device_id}"', "seq": str(batch_seq), "boot": '"b1"'}
    fields["t0"] = str(t0)
    fields.update(env)
    text = ",".join(f'"{key}":{value}' for key, value in fields.items())
    text += ',"r":[' + ",".join(records) + "]"
    if events is not None:
        text += ',"ev":[' + ",".join(events) + "]"
    return ("{" + text + "}").encode()


def _cbor(device_id: str, batch_seq: int, t0: int, records: list[Any], **env: Any) -> bytes:
    batch = {"v": 1, "dev": device_id, "seq": batch_seq, "boot": "b1", "t0": t0, "r": records}
    return cbor2.dumps({**batch, **env})


def _good(sensor: str) -> list[list[Any]]:
    """The two valid readings every hostile batch also carries."""
    return [[sensor + "-a", 0, 20.5, 0], [sensor + "-b", 1000, 21.0, 0]]


def _good_json(sensor: str) -> list[str]:
    return [json.dumps(r, separators=(",", ":")) for r in _good(sensor)]


@dataclass(frozen=True)
class Case:
    name: str
    body_format: str
    # (device, seq, t0, sensor prefix) -> payload
    build: Callable[[str, int, int, str], bytes]
    reasons: tuple[str, ...]  # the rejects recorded
    kept: int  # readings stored: 2 when records are rejected one by one, 0 when refused whole


CASES = [
    Case(
        "unhashable_ids",
        "json",
        lambda d, q, t, s: _json(
            d, q, t, [*_good_json(s), '[["x"],0,20.5,0]', '[{"a":[{}]},0,20.5,0]']
        ),
        ("bad_sensor_id", "bad_sensor_id"),
        2,
    ),
    Case(
        "huge_integers",
        "json",
        lambda d, q, t, s: _json(
            d,
            q,
            t,
            [*_good_json(s), f'["x",0,{BIG},0]', f'["x",{HUGE},20.5,0]', f'["x",0,20.5,{BIG}]'],
        ),
        ("bad_value", "bad_time", "bad_quality"),
        2,
    ),
    Case(
        "non_finite_numbers",
        "json",
        lambda d, q, t, s: _json(
            d, q, t, [*_good_json(s), '["x",0,NaN,0]', '["x",0,Infinity,0]', '["x",0,1e400,0]']
        ),
        ("not_a_number", "not_a_number", "not_a_number"),
        2,
    ),
    Case(
        "record_nested_1000_deep",
        "json",
        lambda d, q, t, s: _json(d, q, t, [*_good_json(s), "[" * 1000 + "]" * 1000]),
        ("malformed_record",),
        2,
    ),
    Case(
        "event_times_and_values",
        "json",
        lambda d, q, t, s: _json(
            d,
            q,
            t,
            _good_json(s),
            ['["x",86400000,"anomaly",25.0,4.5]', f'["x",0,"anomaly",{BIG},4.5]'],
        ),
        ("clock_future", "bad_value"),
        2,
    ),
    Case(
        "conflicting_duplicate",
        "json",
        lambda d, q, t, s: _json(d, q, t, [*_good_json(s), f'["{s}-a",0,30.0,0]']),
        ("conflicting_duplicate",),
        2,
    ),
    Case(
        "cbor_tags_and_types",
        "cbor",
        lambda d, q, t, s: _cbor(
            d,
            q,
            t,
            [
                *_good(s),
                ["x", 0, 2**70, 0],  # bignum (tag 2)
                [datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), 0, 20.5, 0],
                ["x", 0, decimal.Decimal("20.5"), 0],
                ["x", 0, {1, 2}, 0],  # set (tag 258)
                ["x", 0, cbor2.undefined, 0],
                [b"x\x00", 0, 20.5, 0],
                ["x", 0, cbor2.CBORTag(4711, 20.5), 0],
            ],
        ),
        (
            "bad_value",
            "bad_sensor_id",
            "bad_value",
            "bad_value",
            "bad_value",
            "bad_sensor_id",
            "bad_value",
        ),
        2,
    ),
    Case(
        "seq_beyond_int64",
        "json",
        lambda d, q, t, s: _json(d, q, t, _good_json(s), seq=str(2**63)),
        ("bad_seq",),
        0,
    ),
    Case(
        "batch_nested_3000_deep",
        "json",
        lambda d, q, t, s: _json(d, q, t, [*_good_json(s), "[" * 3000 + "]" * 3000]),
        ("malformed_json",),
        0,
    ),
    Case(
        "cbor_bignum_seq",
        "cbor",
        lambda d, q, t, s: _cbor(d, q, t, _good(s), seq=2**64),
        ("bad_seq",),
        0,
    ),
    Case(
        "cbor_nested_100_deep",
        "cbor",
        lambda d, q, t, s: _cbor(d, q, t, [*_good(s), json.loads("[" * 100 + "]" * 100)]),
        ("malformed_cbor",),
        0,
    ),
]


def _rejects(stack: Stack, transport: str) -> Counter[str]:
    rows = query(
        stack.database_url,
        "SELECT reason FROM ingest_rejects WHERE device_id = %s AND transport = %s",
        (ATTACKER, transport),
    )
    return Counter(reason for (reason,) in rows)


def _stored(stack: Stack, device_id: str, prefix: str) -> int:
    rows = query(
        stack.database_url,
        "SELECT count(*) FROM readings WHERE device_id = %s AND sensor_id LIKE %s",
        (device_id, prefix + "-%"),
    )
    return int(rows[0][0])


@pytest.mark.parametrize("transport", list(SENDERS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_content_is_rejected_and_ingest_goes_on(
    stack: Stack, devices: dict[str, Device], case: Case, transport: str
) -> None:
    send = SENDERS[transport]
    prefix = f"{case.name[:40]}.{transport}"
    before = _rejects(stack, transport)
    sent = send(
        stack,
        devices[ATTACKER],
        case.build(ATTACKER, next(_seq), int(time.time()), prefix),
        case.body_format,
    )

    if case.kept:
        assert sent.status in (200, 204), sent  # 2.04 Changed on CoAP
        ack = json.loads(sent.body)
        assert (ack["stored"], ack["rej"]) == (case.kept, len(case.reasons)), ack
    else:
        assert sent.status in (400, 413, 422), sent
        assert case.reasons[0] in sent.body.decode(), sent
    # The answer came after the commit; the rejects were committed with the batch.
    assert _rejects(stack, transport) - before == Counter(case.reasons)
    assert _stored(stack, ATTACKER, prefix) == case.kept

    # Another device is not held up by it.
    canary = encode_batch(CANARY, next(_seq), "b1", int(time.time()), [(prefix + "-c", 0, 4.0, 0)])
    reply = send(stack, devices[CANARY], canary, "json")  # each sender waits at most 10 s
    assert reply.status in (200, 204), reply
    assert json.loads(reply.body)["stored"] == 1
    assert _stored(stack, CANARY, prefix) == 1
    wait_for(
        lambda: httpx.get(stack.url + "/readyz", timeout=2).status_code == 200, 5, what="ready"
    )
    assert stack.collector.alive()
