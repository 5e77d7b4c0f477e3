"""Mosquitto's dynamic-security plugin as the broker back end.

The collector connects as the plugin's admin account and sends command lists to
``$CONTROL/dynamic-security/v1``. Each device gets a client (user name = device id) and a role
of its own that lists its topics: the plugin checks SUBSCRIBE against ``subscribeLiteral`` ACLs,
so a device asking for ``#`` or another device's topics gets SUBACK "not authorized", not just
silence. Mosquitto 2.0 does not substitute ``%u``/``%c`` in the plugin's ACLs, hence one role
per device rather than one shared pattern role.

Each device client is bound to its client id (the device id): the plugin refuses that user name
with any other client id, so a device can never connect as a collector or as another device and
take over its session. The collectors' client has no binding (every instance and connection has
an id of its own) and is the only one whose role may join the shared subscription.

Clear-text device passwords exist only while the API creates or rotates a device, so that is
when they are sent; the broker's plugin file is then the only store of MQTT passwords. A full
sync removes clients of devices that are gone and reports active devices the broker does not
know (they need rotating: the database holds no clear text to recreate them from).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Connection, Engine, text

from collector.broker.files import COLLECTOR_READS, COLLECTOR_WRITES, DEVICE_READS, DEVICE_WRITES
from collector.config import Settings
from collector.tls import mqtt_client_tls
from shared import protocol as p

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
DEVICE_ROLE_PREFIX = "tw-device-"
COLLECTOR_ROLE = "tw-collector"
DEVICE_TEXTNAME = "Thermowatch device"
# Same key as the files back end: one lock for every collector sharing the database.
_LOCK_KEY = 0x7477_6272
_NOT_FOUND = ("Client not found", "Role not found")


class DynsecError(RuntimeError):
    """The broker refused a command, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class Acl:
    """One allow rule of a role; anything without a rule is denied by the default access."""

    acltype: str
    topic: str

    def as_json(self) -> dict[str, Any]:
        return {"acltype": self.acltype, "topic": self.topic, "allow": True}


def device_role(device_id: str) -> str:
    return DEVICE_ROLE_PREFIX + device_id


def device_acls(device_id: str) -> list[Acl]:
    """Publish only its own uploads; subscribe to and receive only its own config and acks."""
    # Ids are checked with protocol.valid_id, so they hold no wildcard or separator.
    acls = [Acl("publishClientSend", p.topic(device_id, kind)) for kind in DEVICE_WRITES]
    for kind in DEVICE_READS:
        acls.append(Acl("subscribeLiteral", p.topic(device_id, kind)))
        acls.append(Acl("publishClientReceive", p.topic(device_id, kind)))
    return acls


def collector_acls(shared_group: str) -> list[Acl]:
    """Every device's uploads (shared or plain subscription), and acks and config to send."""
    acls = []
    for kind in COLLECTOR_READS:
        plain = f"{p.TOPIC_PREFIX}/+/{kind}"
        acls.append(Acl("subscribeLiteral", plain))
        acls.append(Acl("subscribeLiteral", f"$share/{shared_group}/{plain}"))
        acls.append(Acl("publishClientReceive", plain))
    acls += [Acl("publishClientSend", f"{p.TOPIC_PREFIX}/+/{kind}") for kind in COLLECTOR_WRITES]
    return acls


# Deny what no role allows; unsubscribing from anything is harmless.
DEFAULT_ACCESS = [
    {"acltype": "publishClientSend", "allow": False},
    {"acltype": "publishClientReceive", "allow": False},
    {"acltype": "subscribe", "allow": False},
    {"acltype": "unsubscribe", "allow": True},
]


class ControlClient:
    """One MQTT v5 connection as the plugin's admin: sends a command list and waits for the
    response carrying the same correlation data (other collectors' responses are ignored)."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        client_id: str,
        timeout_s: float,
        ca_file: str | None = None,
    ) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._ready = threading.Event()
        self._pending: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._pending_lock = threading.Lock()
        self._started = False
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(username, password)
        mqtt_client_tls(client, ca_file)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the dynamic-security admin account: %s", rc)
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        if codes and not codes[0].is_failure:
            self._ready.set()
        else:
            log.error("the admin account may not read %s: %s", RESPONSE_TOPIC, codes)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self._ready.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload)["responses"]
            correlation = responses[0].get("correlationData")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            log.warning("unreadable dynamic-security response (%d bytes)", len(msg.payload))
            return
        with self._pending_lock:
            waiting = self._pending.get(correlation)
        if waiting is not None:
            waiting[1].extend(responses)
            waiting[0].set()

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the commands as one list; the responses, in the same order."""
        if not self._started:
            self._started = True
            self.client.connect_async(self.host, self.port, keepalive=30)
            self.client.loop_start()
        if not self._ready.wait(self.timeout_s):
            raise DynsecError(f"no admin connection to the broker at {self.host}:{self.port}")
        correlation = secrets.token_hex(8)
        done: threading.Event = threading.Event()
        responses: list[dict[str, Any]] = []
        with self._pending_lock:
            self._pending[correlation] = (done, responses)
        try:
            tagged = [{**command, "correlationData": correlation} for command in commands]
            self.client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
            if not done.wait(self.timeout_s):
                raise DynsecError("the dynamic-security plugin did not answer")
        finally:
            with self._pending_lock:
                self._pending.pop(correlation, None)
        return responses

    def close(self) -> None:
        if self._started:
            self.client.disconnect()
            self.client.loop_stop()
            self._started = False


@dataclass
class SyncReport:
    """What a full sync changed at the broker and what it could not fix."""

    removed: list[str] = field(default_factory=list)  # clients of devices no longer active
    needs_rotation: list[str] = field(default_factory=list)  # active, unknown to the broker
    bound: list[str] = field(default_factory=list)  # device clients now bound to their id


class DynsecBackend:
    """Drives the plugin from the API's hooks and a periodic full sync; thread-safe."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        if not (settings.broker_admin_username and settings.broker_admin_password):
            raise ValueError("broker_admin_username and broker_admin_password are both needed")
        self.settings = settings
        self.engine = engine
        self.admin_username = settings.broker_admin_username
        self.control = ControlClient(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.broker_admin_username,
            settings.broker_admin_password.get_secret_value(),
            f"{settings.mqtt_client_id}-dynsec",
            settings.broker_command_timeout_s,
            settings.mqtt_tls_ca_file,
        )
        self._local = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._collector_ready = False

    # -- commands ----------------------------------------------------------------------------

    def _run(self, commands: list[dict[str, Any]], tolerate: tuple[str, ...] = ()) -> list[Any]:
        responses = self.control.run(commands)
        if len(responses) != len(commands):
            raise DynsecError(f"{len(commands)} commands but {len(responses)} responses")
        for command, response in zip(commands, responses, strict=True):
            error = response.get("error")
            if error and error not in tolerate:
                raise DynsecError(f"{command['command']}: {error}")
        return responses

    def _ensure_role(self, rolename: str, acls: list[Acl]) -> None:
        """Create the role, or bring its ACLs to exactly ``acls``."""
        (found,) = self._run([{"command": "getRole", "rolename": rolename}], _NOT_FOUND)
        if found.get("error"):
            self._run(
                [
                    {
                        "command": "createRole",
                        "rolename": rolename,
                        "acls": [a.as_json() for a in acls],
                    }
                ]
            )
            return
        current = {
            (a["acltype"], a["topic"]): bool(a.get("allow")) for a in found["data"]["role"]["acls"]
        }
        want = {(a.acltype, a.topic) for a in acls}
        # Removals first: a denying rule for a wanted topic is replaced, not duplicated.
        fixes: list[dict[str, Any]] = [
            {"command": "removeRoleACL", "rolename": rolename, "acltype": t, "topic": topic}
            for (t, topic), allow in sorted(current.items())
            if (t, topic) not in want or not allow
        ]
        fixes += [
            {"command": "addRoleACL", "rolename": rolename, **Acl(t, topic).as_json()}
            for t, topic in sorted(want)
            if not current.get((t, topic))
        ]
        if fixes:
            self._run(fixes)

    def _client(self, username: str) -> dict[str, Any] | None:
        (found,) = self._run([{"command": "getClient", "username": username}], _NOT_FOUND)
        client: dict[str, Any] | None = found.get("data", {}).get("client")
        return client

    def _check_device_client(self, device_id: str) -> bool:
        """True when a client by that name exists; refuse to touch one that is not a device's
        (the admin account, the collector's, or one an operator made by hand)."""
        if device_id in (self.admin_username, self.settings.mqtt_username):
            raise DynsecError(f"{device_id!r} is a broker account, not a device")
        client = self._client(device_id)
        if client is None:
            return False
        if device_role(device_id) not in _role_names(client):
            raise DynsecError(f"broker client {device_id!r} is not a Thermowatch device")
        return True

    # -- locking: one view of the devices at a time, across instances --------------------------

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        with self._local, self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            yield conn

    # -- the API's hooks ---------------------------------------------------------------------

    def put_device(self, device_id: str, password: str) -> None:
        """Create the device's client with this password, or replace an existing one; a
        replaced client is disconnected at once and its old password stops working."""
        with self._locked():
            exists = self._check_device_client(device_id)
            self._ensure_role(device_role(device_id), device_acls(device_id))
            commands: list[dict[str, Any]] = []
            if exists:
                # Delete and create in one list: the plugin applies it in one go, so there
                # is no moment without the device's client, and the old session is dropped.
                commands.append({"command": "deleteClient", "username": device_id})
            commands.append(
                {
                    "command": "createClient",
                    "username": device_id,
                    "password": password,
                    "clientid": device_id,
                    "textname": DEVICE_TEXTNAME,
                    "roles": [{"rolename": device_role(device_id)}],
                }
            )
            self._run(commands)

    def remove_device(self, device_id: str) -> None:
        """Delete the device's client (the broker disconnects it) and its role."""
        with self._locked():
            self._check_device_client(device_id)
            self._run(
                [
                    {"command": "deleteClient", "username": device_id},
                    {"command": "deleteRole", "rolename": device_role(device_id)},
                ],
                _NOT_FOUND,
            )

    def device_created(self, device_id: str, password: str) -> None:
        self._quietly(lambda: self.put_device(device_id, password), device_id)

    def device_rotated(self, device_id: str, password: str) -> None:
        self._quietly(lambda: self.put_device(device_id, password), device_id)

    def device_revoked(self, device_id: str) -> None:
        self._quietly(lambda: self.remove_device(device_id), device_id)

    def _quietly(self, action: Callable[[], None], device_id: str) -> None:
        try:
            action()
        except Exception:
            # The database already holds the change; the broker does not. A removal is retried
            # by the periodic sync; a password cannot be (no clear text is kept).
            log.exception("broker update for device %s failed", device_id)

    # -- full sync ---------------------------------------------------------------------------

    def _ensure_collector(self) -> None:
        s = self.settings
        if not (s.mqtt_username and s.mqtt_password):
            return
        self._ensure_role(COLLECTOR_ROLE, collector_acls(s.mqtt_shared_group))
        client = self._client(s.mqtt_username)
        if client is None:
            self._run(
                [
                    {
                        "command": "createClient",
                        "username": s.mqtt_username,
                        "password": s.mqtt_password,
                        "textname": "Thermowatch collector",
                        "roles": [{"rolename": COLLECTOR_ROLE}],
                    }
                ]
            )
            return
        # The password cannot be read back, so set it; collectors already connected with this
        # account are disconnected once and reconnect with the same password.
        commands: list[dict[str, Any]] = [
            {
                "command": "setClientPassword",
                "username": s.mqtt_username,
                "password": s.mqtt_password,
            }
        ]
        if COLLECTOR_ROLE not in _role_names(client):
            commands.append(
                {
                    "command": "addClientRole",
                    "username": s.mqtt_username,
                    "rolename": COLLECTOR_ROLE,
                }
            )
        if client.get("clientid"):
            # Instances and their connections each use their own id; a binding would let only
            # one of them in.
            commands.append({"command": "setClientId", "username": s.mqtt_username})
        self._run(commands)

    def sync(self) -> SyncReport:
        """Make the broker's device clients match the active devices; raises on failure."""
        report = SyncReport()
        with self._locked() as conn:
            active = {
                r.device_id
                for r in conn.execute(
                    text(
                        "SELECT device_id FROM devices "
                        "WHERE status = 'active' AND mqtt_password_hash IS NOT NULL"
                    )
                )
            }
            self._run([{"command": "setDefaultACLAccess", "acls": DEFAULT_ACCESS}])
            if not self._collector_ready:
                # Once per process: setting the password drops connections using it.
                self._ensure_collector()
                self._collector_ready = True
            clients, roles = self._run(
                [
                    {"command": "listClients", "verbose": True},
                    {"command": "listRoles", "verbose": False},
                ]
            )
            devices = {
                c["username"]
                for c in clients["data"]["clients"]
                if device_role(c["username"]) in _role_names(c)
            }
            stale_roles = {
                r
                for r in roles["data"]["roles"]
                if r.startswith(DEVICE_ROLE_PREFIX) and r[len(DEVICE_ROLE_PREFIX) :] not in active
            }
            removals: list[dict[str, Any]] = []
            for device_id in sorted(devices - active):
                removals.append({"command": "deleteClient", "username": device_id})
                report.removed.append(device_id)
            removals += [{"command": "deleteRole", "rolename": r} for r in sorted(stale_roles)]
            if removals:
                self._run(removals, _NOT_FOUND)
            # Clients created before devices were bound to their client ids (or edited by
            # hand); the plugin disconnects such a device once, it reconnects under its id.
            unbound = [
                c["username"]
                for c in clients["data"]["clients"]
                if c["username"] in devices & active and c.get("clientid") != c["username"]
            ]
            if unbound:
                self._run(
                    [
                        {"command": "setClientId", "username": u, "clientid": u}
                        for u in sorted(unbound)
                    ]
                )
                report.bound = sorted(unbound)
            report.needs_rotation = sorted(active - devices)
        if report.removed:
            log.info("removed broker clients of inactive devices: %s", ", ".join(report.removed))
        if report.bound:
            log.info("bound broker clients to their device ids: %s", ", ".join(report.bound))
        if report.needs_rotation:
            log.warning(
                "active devices unknown to the broker, rotate their credentials: %s",
                ", ".join(report.needs_rotation),
            )
        return report

    def full_sync(self) -> None:
        try:
            self.sync()
        except Exception:
            log.exception("broker sync failed; the periodic sync will retry")

    def start(self) -> None:
        """Full sync every ``broker_sync_interval_s`` from now on (call :meth:`full_sync` first)."""
        self._thread = threading.Thread(target=self._loop, name="broker-dynsec", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.broker_sync_interval_s):
            self.full_sync()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.control.close()


def _role_names(client: dict[str, Any]) -> set[str]:
    return {r["rolename"] for r in client.get("roles", [])}
