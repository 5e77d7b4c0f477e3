"""Where notifications may go: one check, used when a target is saved and again right before each
connection, that refuses every address that is not global — after unwrapping the IPv4 address
inside NAT64, 6to4, IPv4-mapped and IPv4-compatible forms — and a connection made to the address
that was checked (so a DNS answer that changes after the check reaches nothing new)."""

from __future__ import annotations

import json

import pytest

from collector.notify.base import Delivery, NotifyError
from collector.notify.destinations import (
    UnsafeDestination,
    check_target,
    connect_address,
    is_global_address,
    parse_address,
)
from collector.notify.mqtt import MqttNotifier
from collector.notify.smtp import SmtpNotifier
from collector.notify.webhook import WebhookNotifier
from tests.collector.alerts.peers import SmtpServer, WebhookReceiver
from tests.collector.notify.conftest import Dns
from tests.support.broker import MosquittoBroker
from tests.support.mqtt import TestClient
from tests.support.net import wait_for

NOT_GLOBAL = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.5.4",
    "192.168.1.10",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "192.0.0.8",
    "198.18.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fec0::1",
    "ff0e::1",  # global-scope multicast
    "2001:db8::1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "::a9fe:a9fe",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]
GLOBAL = ["44.0.0.1", "2a01:4f8::1", "64:ff9b::2c00:1", "2002:2c00:1::1", "::ffff:44.0.0.1"]


@pytest.mark.parametrize("address", NOT_GLOBAL)
def test_addresses_that_are_not_global_are_refused_whatever_their_form(address: str) -> None:
    assert not is_global_address(parse_address(address))
    with pytest.raises(UnsafeDestination, match="not public"):
        connect_address(address, 443, allow_private=False)


@pytest.mark.parametrize("address", GLOBAL)
def test_global_addresses_pass_also_when_wrapped_in_ipv6(address: str) -> None:
    assert is_global_address(parse_address(address))
    assert parse_address(connect_address(address, 443, allow_private=False)) == parse_address(
        address
    )


def test_one_private_answer_among_public_ones_refuses_the_name(dns: Dns) -> None:
    dns.set("mixed.test", ("44.0.0.1", "2a01:4f8::1", "10.0.0.7"))
    with pytest.raises(UnsafeDestination, match=r"\(10\.0\.0\.7\)"):
        connect_address("mixed.test", 80, allow_private=False)
    dns.set("public.test", ("44.0.0.1", "2a01:4f8::1"))
    assert connect_address("public.test", 80, allow_private=False) == "44.0.0.1"


def test_a_name_that_does_not_resolve_is_refused_and_may_be_retried(dns: Dns) -> None:
    with pytest.raises(UnsafeDestination) as refused:
        connect_address("nowhere.test", 80, allow_private=True)
    assert refused.value.retryable


def _delivery(config: dict[str, object], *, allow_private: bool) -> Delivery:
    item = {
        "id": 1,
        "rule_id": 1,
        "event": "firing",
        "severity": "warning",
        "message": "Freezer is 12 °C",
        "device_id": "d1",
        "sensor_id": "s1",
        "home_id": 3,
    }
    return Delivery("1", 1, "t", 3, config, [item], allow_private=allow_private)


def test_a_webhook_whose_name_rebinds_to_a_private_address_after_saving_gets_nothing(
    dns: Dns,
) -> None:
    hook = WebhookReceiver()
    try:
        port = hook.server.server_address[1]
        config = {"url": f"http://hooks.test:{port}/hook"}
        dns.set("hooks.test", "44.0.0.1", "127.0.0.1")  # public when saved, private when sent
        check_target("webhook", config, allow_private=False)
        with pytest.raises(NotifyError, match="not public") as refused:
            WebhookNotifier().send(_delivery(config, allow_private=False))
        assert not refused.value.retryable
    finally:
        hook.close()
    assert hook.requests == []
    assert dns.lookups == ["hooks.test", "hooks.test"]


def test_a_webhook_connects_to_the_checked_address_under_its_own_name(dns: Dns) -> None:
    hook = WebhookReceiver()
    try:
        port = hook.server.server_address[1]
        dns.set("hooks.test", "127.0.0.1")  # a name only this resolver knows
        WebhookNotifier().send(
            _delivery({"url": f"http://hooks.test:{port}/hook"}, allow_private=True)
        )
    finally:
        hook.close()
    (request,) = hook.requests
    assert request.headers["Host"] == f"hooks.test:{port}"
    assert request.json["alerts"][0]["device_id"] == "d1"
    assert dns.lookups == ["hooks.test"]  # resolved once, by the check; the client did not


def test_smtp_connects_to_the_checked_address_and_refuses_a_private_one(dns: Dns) -> None:
    smtp = SmtpServer()
    try:
        dns.set("mail.test", "127.0.0.1")
        config = {
            "host": "mail.test",
            "port": smtp.port,
            "sender": "alerts@example.org",
            "to": ["owner@example.org"],
            "starttls": False,
        }
        with pytest.raises(NotifyError, match="not public"):
            SmtpNotifier().send(_delivery(config, allow_private=False))
        assert smtp.messages == []
        SmtpNotifier().send(_delivery(config, allow_private=True))
    finally:
        smtp.close()
    (message,) = smtp.messages
    assert message["To"] == "owner@example.org"


def test_mqtt_publishes_to_the_checked_address_and_refuses_a_private_one(
    dns: Dns, broker: MosquittoBroker
) -> None:
    listener = TestClient(broker.port)
    listener.subscribe("dest-test/#")
    try:
        dns.set("broker.test", "127.0.0.1")
        config = {"host": "broker.test", "port": broker.port, "topic_prefix": "dest-test"}
        with pytest.raises(NotifyError, match="not public"):
            MqttNotifier().send(_delivery(config, allow_private=False))
        MqttNotifier().send(_delivery(config, allow_private=True))
        got = wait_for(listener.received, 10, what="the alert on the broker")
    finally:
        listener.close()
    assert json.loads(got[0])["device_id"] == "d1"
