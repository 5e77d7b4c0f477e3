"""A secured stack for tests: a broker that reads the password and ACL files the collector
generates, a collector in production mode (no auto-registration) on a fresh database, and an
admin created through ``thermowatch collector create-admin``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.tls import init as tls_init
from tests.collector.conftest import count_readings
from tests.support.broker import MosquittoBroker, init_dynsec
from tests.support.database import create_database, drop_database
from tests.support.net import wait_for
from tests.support.processes import CollectorProcess, create_admin_key, start_collector

COLLECTOR_USER = "tw-collector"


@dataclass
class Stack:
    database_url: str
    broker: MosquittoBroker
    collector: CollectorProcess
    secret_key: str
    admin_key: str
    admin_password: str
    collector_password: str
    workdir: Path
    cleartexts: list[str] = field(default_factory=list)  # every secret handed out, for grep tests
    broker_admin_password: str = ""  # the dynamic-security plugin's admin (dynsec stacks only)

    @property
    def url(self) -> str:
        return self.collector.url

    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def login(self, username: str, password: str) -> str:
        resp = httpx.post(
            self.url + "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def new_user(self, role: str, home_ids: list[int] = ()) -> tuple[str, str]:  # type: ignore[assignment]
        name = f"{role}-{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(16)
        self.cleartexts.append(password)
        with self.admin() as http:
            resp = http.post(
                "/api/v1/users",
                json={"username": name, "password": password, "role": role, "home_ids": home_ids},
            )
        assert resp.status_code == 201, resp.text
        return name, self.login(name, password)

    def new_home(self, name: str) -> int:
        with self.admin() as http:
            resp = http.post("/api/v1/homes", json={"name": name})
        assert resp.status_code == 201, resp.text
        return int(resp.json()["home_id"])

    def provision(self, device_id: str, home_id: int | None = None, **extra: Any) -> dict[str, Any]:
        with self.admin() as http:
            resp = http.post(
                "/api/v1/devices", json={"device_id": device_id, "home_id": home_id, **extra}
            )
        assert resp.status_code == 201, resp.text
        bundle: dict[str, Any] = resp.json()
        self.cleartexts += [bundle["mqtt"]["password"], bundle["coap"]["token"]]
        return bundle


@contextmanager
def secured_stack(workdir: Path, *, tls: bool = False, **settings: Any) -> Iterator[Stack]:
    """``tls``: devices get the broker's TLS listener and the CA in their bundles (as compose
    deploys it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tls_files = tls_init(workdir / "tls", ["localhost", "127.0.0.1"]) if tls else None
    password_file, acl_file = workdir / "passwd", workdir / "acl"
    collector_password_file = workdir / "collectors.passwd"
    for empty in (password_file, acl_file, collector_password_file):
        empty.write_text("")
    database_url = create_database()
    # As deployed: devices on a listener that binds client ids to user names, the collector on
    # one of its own (deploy/mosquitto/mosquitto.conf).
    broker = MosquittoBroker(
        workdir / "broker",
        allow_anonymous=False,
        password_file=password_file,
        acl_file=acl_file,
        collector_password_file=collector_password_file,
        tls=tls_files,
    ).start()
    assert broker.proc is not None
    pid_file = workdir / "mosquitto.pid"
    pid_file.write_text(str(broker.proc.pid))
    secret_key = secrets.token_urlsafe(48)
    collector_password = secrets.token_urlsafe(16)
    config = dict(
        secret_key=secret_key,
        mqtt_username=COLLECTOR_USER,
        mqtt_password=collector_password,
        broker_password_file=password_file,
        broker_collector_password_file=collector_password_file,
        broker_acl_file=acl_file,
        broker_pid_file=pid_file,
        public_mqtt_host="127.0.0.1",
        public_mqtt_port=broker.port,
        # The defaults a deployment gets: derived from the secret key, unknown to devices.
        mqtt_client_id="",
        mqtt_shared_group="",
    )
    collector_port = broker.collector_port
    if tls_files is not None:
        # Devices are sent to the TLS listener; the collector keeps its own listener (inside
        # the deployment's network), its TLS is tested against the devices' listener.
        config.update(public_mqtt_port=broker.tls_port, public_mqtt_ca_file=tls_files.ca_cert)
    config.update(settings)
    collector = start_collector(database_url, collector_port, auto_register=False, **config)
    admin_password = secrets.token_urlsafe(16)
    admin_key = create_admin_key(collector.env, username="root-admin", password=admin_password)
    stack = Stack(
        database_url,
        broker,
        collector,
        secret_key,
        admin_key,
        admin_password,
        collector_password,
        workdir,
        cleartexts=[admin_key, admin_password, collector_password],
    )
    try:
        yield stack
    finally:
        collector.stop()
        broker.stop()
        drop_database(database_url)


BROKER_ADMIN = "tw-broker-admin"


@contextmanager
def dynsec_stack(workdir: Path, **settings: Any) -> Iterator[Stack]:
    """The same with the dynamic-security back end: one listener, the plugin binds and checks."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker_admin_password = secrets.token_urlsafe(16)
    dynsec_file = workdir / "dynamic-security.json"
    init_dynsec(dynsec_file, BROKER_ADMIN, broker_admin_password)
    database_url = create_database()
    broker = MosquittoBroker(
        workdir / "broker", allow_anonymous=False, dynsec_config=dynsec_file
    ).start()
    secret_key = secrets.token_urlsafe(48)
    collector_password = secrets.token_urlsafe(16)
    config = dict(
        secret_key=secret_key,
        mqtt_username=COLLECTOR_USER,
        mqtt_password=collector_password,
        broker_backend="dynsec",
        broker_admin_username=BROKER_ADMIN,
        broker_admin_password=broker_admin_password,
        public_mqtt_host="127.0.0.1",
        public_mqtt_port=broker.port,
        mqtt_client_id="",
        mqtt_shared_group="",
    )
    config.update(settings)
    collector = start_collector(database_url, broker.port, auto_register=False, **config)
    api_password = secrets.token_urlsafe(16)
    admin_key = create_admin_key(collector.env, username="root-admin", password=api_password)
    stack = Stack(
        database_url,
        broker,
        collector,
        secret_key,
        admin_key,
        api_password,
        collector_password,
        workdir,
        cleartexts=[admin_key, api_password, collector_password, broker_admin_password],
        broker_admin_password=broker_admin_password,
    )
    try:
        yield stack
    finally:
        collector.stop()
        broker.stop()
        drop_database(database_url)


class MqttProbe:
    """A paho client connected as one identity, recording what the broker answered."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        client_id: str | None = None,
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.connect_rc: Any = None
        self.disconnected = False
        self.suback: list[Any] = []
        self.puback: dict[int, Any] = {}
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            # A device's client id is its id (the broker accepts its account under no other).
            client_id=client_id or username or f"probe-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            client.username_pw_set(username, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = lambda c, u, m: self.messages.append(m)
        client.on_subscribe = lambda c, u, mid, codes, props: self.suback.extend(codes)
        client.on_publish = self._on_publish
        self.client = client
        self.port = port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connect_rc = rc

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected = True
        if self.connect_rc is None:
            self.connect_rc = rc

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self.puback[mid] = rc

    def connect(self) -> MqttProbe:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        wait(lambda: self.connect_rc is not None, "CONNACK")
        return self

    @property
    def accepted(self) -> bool:
        return self.connect_rc is not None and not self.connect_rc.is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait(condition: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
    return wait_for(condition, timeout_s, what=what, interval_s=0.02)


readings_count = count_readings


def dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
