"""The dynamic-security back end: a real Mosquitto with the plugin, driven by a real collector
(``broker_backend=dynsec``). The broker itself refuses what a device may not do: SUBSCRIBE to
``#`` or to another device's topics gets SUBACK 0x87, publishing there PUBACK 0x87, and revoked
or rotated passwords stop working while the broker keeps running."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from collector.broker.dynsec import (
    DEVICE_TEXTNAME,
    ControlClient,
    DynsecBackend,
    DynsecError,
    device_acls,
    device_role,
)
from collector.config import Settings
from collector.db.connection import make_engine
from shared.protocol import encode_batch, topic
from tests.collector.auth.stack import (
    BROKER_ADMIN,
    COLLECTOR_USER,
    MqttProbe,
    Stack,
    readings_count,
    wait,
)
from tests.collector.auth.stack import dynsec_stack as stack_with_dynsec
from tests.support.net import free_port

NOT_AUTHORIZED = 0x87


@pytest.fixture(scope="module")
def dynsec_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The tests run full syncs themselves; a periodic one in between would race them.
    with stack_with_dynsec(tmp_path_factory.mktemp("dynsec"), broker_sync_interval_s=3600) as s:
        yield s


def _batch(device_id: str, seq: int = 1) -> bytes:
    return encode_batch(device_id, seq, "b00710ad", int(time.time()), [("s1", 0, 4.5, 0)])


def _connect(stack: Stack, device_id: str, password: str) -> MqttProbe:
    return MqttProbe(stack.broker.port, device_id, password).connect()


def _device(stack: Stack, device_id: str) -> tuple[MqttProbe, str]:
    password = str(stack.provision(device_id)["mqtt"]["password"])
    return _connect(stack, device_id, password), password


def _backend(stack: Stack) -> DynsecBackend:
    """A second collector's view of the same broker and database (no MQTT account of its own:
    the running collector's connection must stay up)."""
    settings = Settings(
        database_url=stack.database_url,
        mqtt_port=stack.broker.port,
        mqtt_client_id=f"dynsec-test-{secrets.token_hex(3)}",
        broker_backend="dynsec",
        broker_admin_username=BROKER_ADMIN,
        broker_admin_password=stack.broker_admin_password,
        broker_command_timeout_s=5,
    )
    return DynsecBackend(settings, make_engine(stack.database_url, pool_size=1))


def test_a_provisioned_device_publishes_and_gets_its_ack(dynsec_stack: Stack) -> None:
    d1, _ = _device(dynsec_stack, "dyn-own")
    assert d1.accepted
    d1.client.subscribe([(topic("dyn-own", "ack"), 1), (topic("dyn-own", "config"), 1)])
    wait(lambda: len(d1.suback) == 2, "SUBACK")
    assert not any(code.is_failure for code in d1.suback)
    d1.client.publish(topic("dyn-own", "readings"), _batch("dyn-own"), qos=1)
    ack = wait(lambda: [m for m in d1.messages if m.topic.endswith("/ack")], "ack")
    assert b'"stored":1' in ack[0].payload
    assert readings_count(dynsec_stack.database_url, "dyn-own") == 1
    d1.close()


def test_subscribing_to_everything_or_another_device_is_refused_at_suback(
    dynsec_stack: Stack,
) -> None:
    dynsec_stack.provision("dyn-other")
    snoop, _ = _device(dynsec_stack, "dyn-snoop")
    filters = [
        "#",
        "tw/#",
        "tw/v1/+/ack",
        topic("dyn-other", "ack"),
        topic("dyn-other", "config"),
        topic("dyn-other", "readings"),
        "$share/thermowatch-collectors/tw/v1/+/readings",
        topic("dyn-snoop", "ack"),  # its own: granted in the same SUBSCRIBE
    ]
    snoop.client.subscribe([(f, 1) for f in filters])
    wait(lambda: len(snoop.suback) == len(filters), "SUBACK")
    assert [code.value for code in snoop.suback] == [NOT_AUTHORIZED] * 7 + [1]
    snoop.close()


def test_publishing_to_another_devices_topic_is_refused(dynsec_stack: Stack) -> None:
    dynsec_stack.provision("dyn-victim")
    intruder, _ = _device(dynsec_stack, "dyn-intruder")
    refused = [
        intruder.client.publish(topic("dyn-victim", "readings"), _batch("dyn-victim"), qos=1),
        intruder.client.publish(topic("dyn-victim", "ack"), b"{}", qos=1),
        intruder.client.publish(topic("dyn-intruder", "config"), b"{}", qos=1),
    ]
    for info in refused:
        rc = wait(lambda info=info: intruder.puback.get(info.mid), "PUBACK")
        assert rc == ReasonCode(4, "Not authorized")
    own = intruder.client.publish(topic("dyn-intruder", "readings"), _batch("dyn-intruder"), qos=1)
    assert not wait(lambda: intruder.puback.get(own.mid), "PUBACK").is_failure
    # The device's own reading being stored shows the collector has seen what came before it.
    wait(lambda: readings_count(dynsec_stack.database_url, "dyn-intruder") == 1, "own reading")
    assert readings_count(dynsec_stack.database_url, "dyn-victim") == 0
    intruder.close()


def test_anonymous_wrong_and_unknown_credentials_are_refused(dynsec_stack: Stack) -> None:
    dynsec_stack.provision("dyn-pw")
    probes = [
        MqttProbe(dynsec_stack.broker.port, None, None).connect(),
        MqttProbe(dynsec_stack.broker.port, "dyn-pw", "not-the-password").connect(),
        MqttProbe(dynsec_stack.broker.port, "nobody", "whatever").connect(),
        MqttProbe(dynsec_stack.broker.port, BROKER_ADMIN, "guess").connect(),
    ]
    for probe in probes:
        assert not probe.accepted
        probe.close()


def test_decommissioning_disconnects_and_refuses_while_the_broker_keeps_running(
    dynsec_stack: Stack,
) -> None:
    assert dynsec_stack.broker.proc is not None
    broker_pid = dynsec_stack.broker.proc.pid
    connected, password = _device(dynsec_stack, "dyn-revoked")
    assert connected.accepted
    with dynsec_stack.admin() as http:
        assert http.post("/api/v1/devices/dyn-revoked/decommission").status_code == 200
    wait(lambda: connected.disconnected, "the broker dropping the revoked client")
    connected.close()
    again = _connect(dynsec_stack, "dyn-revoked", password)
    assert not again.accepted
    again.close()
    assert dynsec_stack.broker.proc is not None and dynsec_stack.broker.proc.pid == broker_pid
    assert dynsec_stack.broker.proc.poll() is None


def test_rotation_drops_the_old_password_and_accepts_the_new_one(dynsec_stack: Stack) -> None:
    connected, old_password = _device(dynsec_stack, "dyn-rotated")
    assert connected.accepted
    with dynsec_stack.admin() as http:
        resp = http.post("/api/v1/devices/dyn-rotated/rotate")
    assert resp.status_code == 200
    new_password = resp.json()["mqtt"]["password"]
    dynsec_stack.cleartexts.append(new_password)
    wait(lambda: connected.disconnected, "the old session being dropped")
    connected.close()
    stale = _connect(dynsec_stack, "dyn-rotated", old_password)
    fresh = _connect(dynsec_stack, "dyn-rotated", new_password)
    assert not stale.accepted
    assert fresh.accepted
    # The recreated client keeps its role: its own topics still work, others' still do not.
    fresh.client.subscribe([(topic("dyn-rotated", "ack"), 1), ("#", 1)])
    wait(lambda: len(fresh.suback) == 2, "SUBACK")
    assert [code.value for code in fresh.suback] == [1, NOT_AUTHORIZED]
    stale.close()
    fresh.close()


def test_a_device_id_naming_the_broker_admin_is_refused(dynsec_stack: Stack) -> None:
    with dynsec_stack.admin() as http:
        resp = http.post("/api/v1/devices", json={"device_id": BROKER_ADMIN})
    assert resp.status_code == 409
    admin = MqttProbe(
        dynsec_stack.broker.port,
        BROKER_ADMIN,
        dynsec_stack.broker_admin_password,
    ).connect()
    assert admin.accepted
    admin.close()


def test_full_sync_removes_stray_device_clients_and_reports_missing_ones(
    dynsec_stack: Stack,
) -> None:
    dynsec_stack.provision("dyn-lost")
    backend = _backend(dynsec_stack)
    try:
        control = backend.control
        # The broker lost one active device (as after restoring an old plugin file), holds a
        # device client the database does not know, and a client an operator made by hand.
        control.run([{"command": "deleteClient", "username": "dyn-lost"}])
        backend.put_device("dyn-stray", "stray-password")
        control.run(
            [{"command": "createClient", "username": "ops-dashboard", "password": "ops-pw"}]
        )
        stray = _connect(dynsec_stack, "dyn-stray", "stray-password")
        assert stray.accepted

        report = backend.sync()

        assert report.removed == ["dyn-stray"]
        assert "dyn-lost" in report.needs_rotation
        wait(lambda: stray.disconnected, "the stray client being dropped")
        stray.close()
        (clients,) = control.run([{"command": "listClients"}])
        names = set(clients["data"]["clients"])
        assert {"ops-dashboard", BROKER_ADMIN, COLLECTOR_USER} <= names
        assert "dyn-stray" not in names
        (roles,) = control.run([{"command": "listRoles"}])
        assert device_role("dyn-stray") not in roles["data"]["roles"]
        # A second sync has nothing left to remove.
        assert backend.sync().removed == []
        # Rotation brings the lost device back.
        with dynsec_stack.admin() as http:
            resp = http.post("/api/v1/devices/dyn-lost/rotate")
        assert resp.status_code == 200
        assert "dyn-lost" not in backend.sync().needs_rotation
        back = _connect(dynsec_stack, "dyn-lost", resp.json()["mqtt"]["password"])
        assert back.accepted
        back.close()
    finally:
        backend.stop()
        backend.engine.dispose()


def test_a_client_that_is_not_a_device_is_never_overwritten(dynsec_stack: Stack) -> None:
    backend = _backend(dynsec_stack)
    try:
        backend.control.run(
            [{"command": "createClient", "username": "ops-grafana", "password": "ops-pw"}]
        )
        with pytest.raises(DynsecError):
            backend.put_device("ops-grafana", "taken-over")
        with pytest.raises(DynsecError):
            backend.put_device(BROKER_ADMIN, "taken-over")
        with pytest.raises(DynsecError):
            backend.remove_device("ops-grafana")
        probe = _connect(dynsec_stack, "ops-grafana", "ops-pw")
        assert probe.accepted
        probe.close()
    finally:
        backend.stop()
        backend.engine.dispose()


def test_rotation_repairs_a_role_whose_acls_drifted(dynsec_stack: Stack) -> None:
    dynsec_stack.provision("dyn-drift")
    backend = _backend(dynsec_stack)
    role = device_role("dyn-drift")
    try:
        backend.control.run(
            [
                {
                    "command": "addRoleACL",
                    "rolename": role,
                    "acltype": "subscribePattern",
                    "topic": "#",
                    "allow": True,
                },
                {
                    "command": "removeRoleACL",
                    "rolename": role,
                    "acltype": "subscribeLiteral",
                    "topic": topic("dyn-drift", "ack"),
                },
            ]
        )
        with dynsec_stack.admin() as http:
            resp = http.post("/api/v1/devices/dyn-drift/rotate")
        assert resp.status_code == 200
        (found,) = backend.control.run([{"command": "getRole", "rolename": role}])
        acls = {(a["acltype"], a["topic"]) for a in found["data"]["role"]["acls"]}
        assert acls == {(a.acltype, a.topic) for a in device_acls("dyn-drift")}
    finally:
        backend.stop()
        backend.engine.dispose()


def test_the_broker_state_holds_no_clear_text_password(dynsec_stack: Stack) -> None:
    _device(dynsec_stack, "dyn-secret")[0].close()
    state = (dynsec_stack.workdir / "dynamic-security.json").read_text()
    assert '"dyn-secret"' in state
    assert DEVICE_TEXTNAME in state
    for secret in dynsec_stack.cleartexts:
        assert secret not in state
    for log in (dynsec_stack.collector.log(), dynsec_stack.broker.log()):
        for secret in dynsec_stack.cleartexts:
            assert secret not in log


def test_commands_fail_cleanly_when_the_broker_is_unreachable() -> None:
    control = ControlClient("127.0.0.1", free_port(), BROKER_ADMIN, "pw", "nobody", 0.3)
    try:
        with pytest.raises(DynsecError):
            control.run([{"command": "listClients"}])
    finally:
        control.close()


def test_the_plugin_state_survives_a_broker_restart_and_the_admin_reconnects(
    dynsec_stack: Stack,
) -> None:
    before, password = _device(dynsec_stack, "dyn-before-restart")
    before.close()
    dynsec_stack.broker.restart()
    again = _connect(dynsec_stack, "dyn-before-restart", password)
    assert again.accepted
    again.close()
    # The collector's admin connection comes back by itself: provisioning works at once.
    after, _ = _device(dynsec_stack, "dyn-after-restart")
    assert after.accepted
    after.client.subscribe([(topic("dyn-after-restart", "ack"), 1), ("#", 1)])
    wait(lambda: len(after.suback) == 2, "SUBACK")
    assert [code.value for code in after.suback] == [1, NOT_AUTHORIZED]
    after.close()


def test_every_broker_update_of_this_module_succeeded(dynsec_stack: Stack) -> None:
    # Hooks log instead of failing the API call; a silent failure would show up only here.
    log = dynsec_stack.collector.log()
    assert "broker update for device" not in log
    assert "broker sync failed" not in log
    assert "refused the dynamic-security admin account" not in log


def test_full_sync_binds_device_clients_to_their_ids(dynsec_stack: Stack) -> None:
    # As for a client created before devices were bound (or unbound by hand).
    _, password = _device(dynsec_stack, "dyn-unbound")
    backend = _backend(dynsec_stack)
    try:
        backend.control.run([{"command": "setClientId", "username": "dyn-unbound"}])
        loose = MqttProbe(dynsec_stack.broker.port, "dyn-unbound", password, "another-id")
        assert loose.connect().accepted
        loose.close()

        assert "dyn-unbound" in backend.sync().bound

        wrong = MqttProbe(dynsec_stack.broker.port, "dyn-unbound", password, "another-id")
        assert not wrong.connect().accepted
        wrong.close()
        right = _connect(dynsec_stack, "dyn-unbound", password)
        assert right.accepted
        right.close()
        assert "dyn-unbound" not in backend.sync().bound
    finally:
        backend.stop()
        backend.engine.dispose()
