"""A provisioned device that turns hostile at the broker, on both broker back ends: it cannot
take over a collector's connections (ingest, presence, broker admin) or another device's
session, nor take a share of the collectors' shared subscription. Each test measures what an
honest device sees meanwhile: its batches stored and acknowledged, none lost."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from collector.config import Settings
from edge.config import load_settings
from edge.forward.mqtt import MqttForwarder
from shared import protocol
from shared.protocol import encode_batch, topic
from tests.collector.auth.stack import (
    BROKER_ADMIN,
    COLLECTOR_USER,
    MqttProbe,
    Stack,
    dynsec_stack,
    readings_count,
    secured_stack,
    wait,
)
from tests.support.net import wait_for

NOT_AUTHORIZED = 0x87
READINGS_PER_BATCH = 5
_T0 = int(time.time()) - 3600


@pytest.fixture(scope="module", params=["files", "dynsec"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    make = secured_stack if request.param == "files" else dynsec_stack
    with make(tmp_path_factory.mktemp(f"hostile-{request.param}")) as s:
        yield s


def _dynsec(stack: Stack) -> bool:
    return stack.broker.dynsec_config is not None


def _batch(device_id: str, seq: int) -> bytes:
    """Batch ``seq`` of a device: readings of their own times, so none is a duplicate."""
    readings = [(f"s{i}", i * 1000, 4.5 + i, 0) for i in range(READINGS_PER_BATCH)]
    return encode_batch(device_id, seq, "b00710ad", _T0 + 10 * seq, readings)


def _password(stack: Stack, device_id: str) -> str:
    return str(stack.provision(device_id)["mqtt"]["password"])


def _honest(stack: Stack, device_id: str) -> MqttProbe:
    """A device as it should behave: its own client id, subscribed to its acks."""
    probe = MqttProbe(stack.broker.port, device_id, _password(stack, device_id)).connect()
    assert probe.accepted
    probe.client.subscribe(topic(device_id, "ack"), qos=1)
    wait(lambda: probe.suback, "SUBACK")
    return probe


def _acks(probe: MqttProbe) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in list(probe.messages) if m.topic.endswith("/ack")]


def _collector_client_ids(stack: Stack) -> dict[str, str]:
    """The client ids the collector really connected with, as the broker logged them."""
    ids = {}
    for cid, user in re.findall(
        r"New client connected from \S+ as (\S+) \(.*u'([^']+)'\)", stack.broker.log()
    ):
        if user == COLLECTOR_USER:
            ids["presence" if cid.endswith("-presence") else "ingest"] = cid
        elif user == BROKER_ADMIN:
            ids["broker admin"] = cid
    expected = {"ingest", "presence"} | ({"broker admin"} if _dynsec(stack) else set())
    assert set(ids) == expected, ids
    return ids


def _shared_group(stack: Stack) -> str:
    """The group the collector subscribes with; checked against what the broker was given."""
    configured = stack.collector.env.get("THERMOWATCH_MQTT_SHARED_GROUP", "")
    group = Settings(secret_key=stack.secret_key, mqtt_shared_group=configured).mqtt_shared_group
    if not _dynsec(stack):
        assert f"$share/{group}/tw/v1/+/readings" in (stack.workdir / "acl").read_text()
    return group


def _takeovers(log: str, client_id: str) -> int:
    """Times the broker closed a connection because another one came with its client id, and
    times that client id (re)connected."""
    closed = log.count(f"Client {client_id} already connected, closing old connection.")
    connected = len(re.findall(rf"New client connected from \S+ as {re.escape(client_id)} \(", log))
    return closed + connected


def test_a_device_using_the_collectors_client_ids_disconnects_no_collector(stack: Stack) -> None:
    ids = _collector_client_ids(stack)
    attacker_password = _password(stack, "evil-ids")
    canary = _honest(stack, "canary-ids")
    log_start = len(stack.broker.log())
    seq = 0
    for _ in range(3):  # what an attacker would do: come back each time it is dropped
        for client_id in ids.values():
            attacker = MqttProbe(
                stack.broker.port, "evil-ids", attacker_password, client_id=client_id
            ).connect()
            # The plugin refuses the device's account under any id but its own; the files
            # back end's device listener replaces the id with the device's user name.
            assert attacker.accepted != _dynsec(stack)
            seq += 1
            canary.client.publish(topic("canary-ids", "readings"), _batch("canary-ids", seq), qos=1)
            wait(lambda seq=seq: len(_acks(canary)) == seq, "the canary's ack", 15)
            attacker.close()
    log = stack.broker.log()[log_start:]
    for name, client_id in ids.items():
        assert _takeovers(log, client_id) == 0, f"the collector's {name} connection was disturbed"
    assert not canary.disconnected
    assert readings_count(stack.database_url, "canary-ids") == seq * READINGS_PER_BATCH
    assert all(ack["stored"] == READINGS_PER_BATCH for ack in _acks(canary))
    assert httpx.get(stack.url + "/readyz").status_code == 200
    canary.close()


def test_a_device_using_another_devices_client_id_cannot_take_over_its_session(
    stack: Stack,
) -> None:
    victim = _honest(stack, "victim-id")
    attacker_password = _password(stack, "evil-id")
    log_start = len(stack.broker.log())
    attacker = MqttProbe(
        stack.broker.port, "evil-id", attacker_password, client_id="victim-id"
    ).connect()
    assert attacker.accepted != _dynsec(stack)
    victim.client.publish(topic("victim-id", "readings"), _batch("victim-id", 1), qos=1)
    wait(lambda: _acks(victim), "the victim's ack")
    assert not victim.disconnected
    assert "Client victim-id already connected" not in stack.broker.log()[log_start:]
    assert readings_count(stack.database_url, "victim-id") == READINGS_PER_BATCH
    attacker.close()
    victim.close()


# Only the files back end has a listener of the collectors' own (the plugin binds client ids
# on the one listener instead).
@pytest.mark.parametrize("stack", ["files"], indirect=True)
def test_a_device_cannot_log_in_on_the_collectors_listener(stack: Stack) -> None:
    assert stack.broker.collector_port != stack.broker.port
    password = _password(stack, "evil-listener")
    probe = MqttProbe(stack.broker.collector_port, "evil-listener", password).connect()
    assert not probe.accepted
    probe.close()


def test_devices_subscribing_to_the_collectors_group_take_no_share(stack: Stack) -> None:
    group = _shared_group(stack)
    # What a device can know or guess: the former well-known group, any plain subscription.
    filters = [
        f"$share/{protocol.SHARED_GROUP}/tw/v1/+/readings",
        f"$share/{protocol.SHARED_GROUP}/tw/v1/+/events",
        "$share/x/tw/v1/#",
        "tw/v1/+/readings",
    ]
    if _dynsec(stack):
        # The plugin refuses $share to devices whatever the group, so the real one is tried too.
        # On the files back end the group's name is a secret (docs/security.md).
        filters += [f"$share/{group}/tw/v1/+/readings", f"$share/{group}/tw/v1/+/events"]
    thieves = []
    for k in range(3):
        thief = MqttProbe(stack.broker.port, f"evil-share-{k}", _password(stack, f"evil-share-{k}"))
        thief.connect().client.subscribe([(f, 1) for f in filters])
        wait(lambda thief=thief: len(thief.suback) == len(filters), "SUBACK")
        if _dynsec(stack):
            assert [code.value for code in thief.suback] == [NOT_AUTHORIZED] * len(filters)
        thieves.append(thief)
    senders = [_honest(stack, f"canary-share-{d}") for d in range(2)]
    batches = 20
    for seq in range(1, batches + 1):
        for d, sender in enumerate(senders):
            device_id = f"canary-share-{d}"
            sender.client.publish(topic(device_id, "readings"), _batch(device_id, seq), qos=1)
    wait_for(
        lambda: all(len(_acks(s)) == batches for s in senders),
        30,
        what="every batch acknowledged",
    )
    for d in range(2):
        assert readings_count(stack.database_url, f"canary-share-{d}") == (
            batches * READINGS_PER_BATCH
        )
    for thief in thieves:
        assert not [m.topic for m in thief.messages if "canary-share" in m.topic]
        thief.close()
    for sender in senders:
        sender.close()


def test_no_collector_name_reaches_a_device(stack: Stack) -> None:
    # The names are secrets on the files back end: nothing a device is given may hold them.
    names = [_shared_group(stack), *_collector_client_ids(stack).values()]
    bundle = json.dumps(stack.provision("nosy"))
    device = MqttProbe(stack.broker.port, "nosy", json.loads(bundle)["mqtt"]["password"])
    device.connect().client.subscribe([("#", 1), ("$SYS/#", 1), (topic("nosy", "ack"), 1)])
    wait(lambda: len(device.suback) == 3, "SUBACK")
    device.client.publish(topic("nosy", "readings"), _batch("nosy", 1), qos=1)
    wait(lambda: _acks(device), "its ack")
    seen = bundle + "".join(m.topic + m.payload.decode("utf-8", "replace") for m in device.messages)
    for name in names:
        assert name not in seen
    device.close()


def test_the_edge_forwarder_connects_under_its_bound_client_id(stack: Stack) -> None:
    password = _password(stack, "edge-bound")
    settings = load_settings(
        None,
        None,
        device_id="edge-bound",
        mqtt_host="127.0.0.1",
        mqtt_port=stack.broker.port,
        mqtt_username="edge-bound",
        mqtt_password=password,
    )
    acks: list[dict[str, object]] = []
    forwarder = MqttForwarder(settings, "b00710ad", acks.append)
    forwarder.start()
    try:
        wait_for(lambda: forwarder.connected, 10, what="the forwarder connected")
        assert forwarder.send(protocol.T_READINGS, _batch("edge-bound", 1))
        wait(lambda: acks, "the collector's ack")
        assert readings_count(stack.database_url, "edge-bound") == READINGS_PER_BATCH
    finally:
        forwarder.stop()
