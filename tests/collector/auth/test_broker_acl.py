"""Device credentials at the broker: each device reaches only its own topics, anonymous and
revoked clients are refused, and revocation works while the broker keeps running."""

from __future__ import annotations

import time

from paho.mqtt.reasoncodes import ReasonCode

from shared.protocol import encode_batch, topic
from tests.collector.auth.stack import MqttProbe, Stack, readings_count, wait


def _batch(device_id: str, seq: int = 1) -> bytes:
    return encode_batch(device_id, seq, "b00710ad", int(time.time()), [("s1", 0, 4.5, 0)])


def _device(stack: Stack, device_id: str) -> MqttProbe:
    bundle = stack.provision(device_id)
    probe = MqttProbe(stack.broker.port, bundle["mqtt"]["username"], bundle["mqtt"]["password"])
    return probe.connect()


def test_a_device_publishes_to_its_own_topics_and_gets_its_ack(stack: Stack) -> None:
    d1 = _device(stack, "acl-own")
    assert d1.accepted
    d1.client.subscribe(topic("acl-own", "ack"), qos=1)
    wait(lambda: d1.suback, "SUBACK")
    assert not d1.suback[0].is_failure
    d1.client.publish(topic("acl-own", "readings"), _batch("acl-own"), qos=1)
    ack = wait(lambda: d1.messages, "ack from the collector")
    assert b'"stored":1' in ack[0].payload
    assert readings_count(stack.database_url, "acl-own") == 1
    d1.close()


def test_a_device_cannot_publish_to_another_devices_topics(stack: Stack) -> None:
    stack.provision("acl-victim")
    d1 = _device(stack, "acl-intruder")
    info = d1.client.publish(topic("acl-victim", "readings"), _batch("acl-victim"), qos=1)
    rc = wait(lambda: d1.puback.get(info.mid), "PUBACK")
    # MQTT v5: Mosquitto answers "not authorized" and drops the message.
    assert rc == ReasonCode(4, "Not authorized") or rc.is_failure
    time.sleep(0.5)  # nothing may arrive; a stored reading would show up well within this
    assert readings_count(stack.database_url, "acl-victim") == 0
    d1.close()


def test_a_device_subscribed_to_everything_receives_only_its_own_topics(stack: Stack) -> None:
    # Mosquitto's acl_file checks "read" when a message is delivered, not at SUBSCRIBE (its
    # SUBACK grants any filter; see docs/security.md), so what matters is what arrives.
    other = _device(stack, "acl-other")
    snoop = _device(stack, "acl-snoop")
    snoop.client.subscribe(
        [("#", 1), (topic("acl-other", "ack"), 1), (topic("acl-other", "readings"), 1)]
    )
    wait(lambda: len(snoop.suback) == 3, "SUBACK")
    other.client.subscribe(topic("acl-other", "ack"), qos=1)
    wait(lambda: other.suback, "SUBACK")
    other.client.publish(topic("acl-other", "readings"), _batch("acl-other"), qos=1)
    wait(lambda: other.messages, "the other device's ack")
    snoop.client.publish(topic("acl-snoop", "readings"), _batch("acl-snoop"), qos=1)
    # Its own ack and retained config come through "#"; nothing of the other device does.
    wait(lambda: any(m.topic.endswith("/ack") for m in snoop.messages), "its own ack")
    time.sleep(0.3)
    assert {m.topic for m in snoop.messages} == {
        topic("acl-snoop", "ack"),
        topic("acl-snoop", "config"),
    }
    snoop.close()
    other.close()


def test_a_payload_claiming_another_device_is_rejected(stack: Stack) -> None:
    stack.provision("acl-real")
    d1 = _device(stack, "acl-liar")
    d1.client.publish(topic("acl-liar", "readings"), _batch("acl-real"), qos=1)
    import psycopg

    def rejected() -> bool:
        with psycopg.connect(stack.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM ingest_rejects WHERE device_id = 'acl-liar' "
                "AND reason = 'device_mismatch'"
            ).fetchone()
        return bool(row and row[0] == 1)

    wait(rejected, "device_mismatch reject")
    assert readings_count(stack.database_url, "acl-real") == 0
    d1.close()


def test_anonymous_and_wrong_passwords_are_refused(stack: Stack) -> None:
    stack.provision("acl-pw")
    anonymous = MqttProbe(stack.broker.port, None, None).connect()
    wrong = MqttProbe(stack.broker.port, "acl-pw", "not-the-password").connect()
    unknown = MqttProbe(stack.broker.port, "nobody", "whatever").connect()
    for probe in (anonymous, wrong, unknown):
        assert not probe.accepted
        probe.close()


def test_revocation_disconnects_and_refuses_while_the_broker_keeps_running(stack: Stack) -> None:
    assert stack.broker.proc is not None
    broker_pid = stack.broker.proc.pid
    bundle = stack.provision("acl-revoked")
    user, password = bundle["mqtt"]["username"], bundle["mqtt"]["password"]
    connected = MqttProbe(stack.broker.port, user, password).connect()
    assert connected.accepted
    with stack.admin() as http:
        assert http.post("/api/v1/devices/acl-revoked/decommission").status_code == 200
    wait(lambda: connected.disconnected, "the broker dropping the revoked client")
    connected.close()
    again = MqttProbe(stack.broker.port, user, password).connect()
    assert not again.accepted
    again.close()
    assert stack.broker.proc is not None and stack.broker.proc.pid == broker_pid
    assert stack.broker.proc.poll() is None


def test_rotation_replaces_the_password_without_a_broker_restart(stack: Stack) -> None:
    old = stack.provision("acl-rotated")
    with stack.admin() as http:
        resp = http.post("/api/v1/devices/acl-rotated/rotate")
    assert resp.status_code == 200
    new = resp.json()
    stack.cleartexts += [new["mqtt"]["password"], new["coap"]["token"]]
    assert new["mqtt"]["password"] != old["mqtt"]["password"]
    stale = MqttProbe(stack.broker.port, "acl-rotated", old["mqtt"]["password"]).connect()
    fresh = MqttProbe(stack.broker.port, "acl-rotated", new["mqtt"]["password"]).connect()
    assert not stale.accepted
    assert fresh.accepted
    stale.close()
    fresh.close()


def test_config_changes_reach_the_device_retained(stack: Stack) -> None:
    bundle = stack.provision(
        "acl-config",
        sensors=[{"sensor_id": "s1", "label": "Freezer", "rom_address": "28-0316a279d1ff"}],
        config={"sample_period_s": 30},
    )
    assert bundle["config"]["sample_period_s"] == 30
    assert bundle["sensors"] == [
        {"sensor_id": "s1", "label": "Freezer", "rom_address": "28-0316a279d1ff"}
    ]
    new_config = {"sample_period_s": 5, "sensors": {"s1": {"high_c": -15.0, "hysteresis_c": 1}}}
    with stack.admin() as http:
        resp = http.put("/api/v1/devices/acl-config/config", json=new_config)
    assert resp.status_code == 200
    assert resp.headers["X-Config-Pushed"] == "true"
    # The device connects afterwards and still gets it: the message is retained.
    device = MqttProbe(stack.broker.port, "acl-config", bundle["mqtt"]["password"]).connect()
    device.client.subscribe(topic("acl-config", "config"), qos=1)
    message = wait(lambda: device.messages, "retained config")[0]
    assert message.retain
    assert message.payload == (
        b'{"v":1,"sample_period_s":5.0,"sensors":{"s1":{"high_c":-15.0,"hysteresis_c":1.0}}}'
    )
    device.close()
