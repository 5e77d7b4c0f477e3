"""``thermowatch demo``: the whole system on one machine with simulated probes.

It runs the production path on one machine: a private Mosquitto on a free port that refuses
anonymous clients and reads the password and ACL files the collector writes, the collector against
a local PostgreSQL with TimescaleDB, an admin created with ``collector create-admin``, a device
provisioned through the API, and an edge agent with simulated probes started from the device's
provisioning bundle. Then it prints what the API returns.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import typer

from collector import tls

DEMO_DEVICE = "demo-edge"


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_database(admin_url: str, name: str) -> str:
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and not _schema_is_known(url):
            # Left by another version of Thermowatch (a newer checkout, another branch): the
            # demo's data is disposable, and this code could not migrate it.
            print(f"database {name} has a schema this version does not know: starting it afresh")
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return url


def _schema_is_known(url: str) -> bool:
    """True when every migration the database has been through is one of ours."""
    from alembic.script import ScriptDirectory

    from collector.db.migrate import alembic_config

    with psycopg.connect(url, autocommit=True) as conn:
        table = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
        if table is None or table[0] is None:
            return True  # never migrated
        versions = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
    scripts = ScriptDirectory.from_config(alembic_config(url))
    try:
        return all(scripts.get_revision(v) is not None for v in versions)
    except Exception:  # alembic raises its own errors for revisions it cannot find
        return False


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the collector exited:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the collector did not become ready:\n{log.read_text()}")


def _show(api: httpx.Client, device_id: str) -> None:
    try:
        latest = api.get(f"/api/v1/devices/{device_id}/latest", timeout=2)
    except httpx.HTTPError as exc:
        typer.echo(f"  (API not answering: {exc})")
        return
    if latest.status_code != 200 or not latest.json():
        typer.echo("  waiting for the first batch…")
        return
    for sensor in latest.json():
        value = "—" if sensor["value"] is None else f"{sensor['value']:7.3f} °C"
        fault = f"  last fault: {sensor['last_fault']}" if sensor["last_fault"] else ""
        typer.echo(f"  {sensor['sensor_id']:<10} {value}  at {sensor['time']}{fault}")


def _create_admin(python: list[str], env: dict[str, str]) -> str:
    """An admin with an API key, made the way an operator makes the first one."""
    password = secrets.token_urlsafe(16)
    created = subprocess.run(
        [
            *python,
            "collector",
            "create-admin",
            "--username",
            f"demo-{secrets.token_hex(3)}",
            "--api-key",
            "demo",
        ],
        input=f"{password}\n{password}\n",
        capture_output=True,
        text=True,
        env=env,
    )
    if created.returncode != 0:
        raise RuntimeError(f"create-admin failed:\n{created.stderr}")
    return created.stdout.strip().rsplit(" ", 1)[-1]


def demo(
    duration_s: float = typer.Option(0, help="Stop after this many seconds (0: until Ctrl-C)"),
    sensors: int = typer.Option(4, min=1, max=64, help="Simulated probes"),
    sample_period_s: float = typer.Option(1.0, help="Seconds between samples"),
    http_port: int = typer.Option(8080, help="Port of the collector's HTTP API"),
    admin_database_url: str = typer.Option(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        envvar="THERMOWATCH_DEMO_ADMIN_DATABASE_URL",
        help="A PostgreSQL server with TimescaleDB, where the demo keeps its own database",
    ),
    database: str = typer.Option(
        "thermowatch_demo", envvar="THERMOWATCH_DEMO_DATABASE", help="The demo's database"
    ),
) -> None:
    """Start a broker, the collector and a simulated edge agent, and show live readings."""
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    work = Path(tempfile.mkdtemp(prefix="thermowatch-demo-"))
    database_url = _ensure_database(admin_database_url, database)
    mqtt_port, coap_port = _free_port(), _free_port(socket.SOCK_DGRAM)
    collector_mqtt_port = _free_port()
    passwd, acl, pid_file = work / "passwd", work / "acl", work / "mosquitto.pid"
    collectors_passwd = work / "collectors.passwd"
    for empty in (passwd, acl, collectors_passwd):
        empty.write_text("")
    # Devices and the collector on listeners of their own, as deployed (docs/security.md); the
    # devices' over TLS with the installation's own CA, which their bundle carries.
    certs = tls.init(work / "tls", ["127.0.0.1"])
    (work / "mosquitto.conf").write_text(
        f"per_listener_settings true\nlistener {mqtt_port} 127.0.0.1\nallow_anonymous false\n"
        f"use_username_as_clientid true\npassword_file {passwd}\nacl_file {acl}\n"
        f"certfile {certs.server_cert}\nkeyfile {certs.server_key}\n"
        f"listener {collector_mqtt_port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {collectors_passwd}\nacl_file {acl}\n"
        f"persistence true\npersistence_location {work}/\nuser root\n"
        "max_inflight_messages 200\n"
    )
    python = [sys.executable, "-m", "thermowatch.cli"]
    api_url = f"http://127.0.0.1:{http_port}"
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        broker = _spawn(
            [mosquitto, "-c", str(work / "mosquitto.conf")],
            dict(os.environ),
            work / "mosquitto.log",
        )
        stack.callback(_stop, broker)
        pid_file.write_text(str(broker.pid))
        collector_env = {
            **os.environ,
            "THERMOWATCH_DATABASE_URL": database_url,
            "THERMOWATCH_SECRET_KEY": secrets.token_urlsafe(48),
            "THERMOWATCH_MQTT_PORT": str(collector_mqtt_port),
            "THERMOWATCH_PUBLIC_MQTT_PORT": str(mqtt_port),
            "THERMOWATCH_PUBLIC_MQTT_CA_FILE": str(certs.ca_cert),
            "THERMOWATCH_MQTT_USERNAME": "thermowatch-collector",
            "THERMOWATCH_MQTT_PASSWORD": secrets.token_urlsafe(24),
            "THERMOWATCH_BROKER_PASSWORD_FILE": str(passwd),
            "THERMOWATCH_BROKER_COLLECTOR_PASSWORD_FILE": str(collectors_passwd),
            "THERMOWATCH_BROKER_ACL_FILE": str(acl),
            "THERMOWATCH_BROKER_PID_FILE": str(pid_file),
            "THERMOWATCH_HTTP_PORT": str(http_port),
            "THERMOWATCH_COAP_PORT": str(coap_port),
            # On the loopback only: plaintext CoAP is an explicit opt-in (docs/security.md).
            "THERMOWATCH_COAP_PLAINTEXT_ALLOWED": "true",
        }
        admin_key = _create_admin(python, collector_env)
        collector_log = work / "collector.log"
        collector = _spawn([*python, "collector", "serve"], collector_env, collector_log)
        stack.callback(_stop, collector)
        _wait_http(api_url + "/readyz", collector, collector_log, 60)
        api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {admin_key}"})
        stack.callback(api.close)
        device_id = f"{DEMO_DEVICE}-{secrets.token_hex(2)}"
        provisioned = api.post("/api/v1/devices", json={"device_id": device_id})
        if provisioned.status_code != 201:
            raise RuntimeError(f"provisioning failed: {provisioned.text}")
        bundle = work / "bundle.json"
        bundle.write_text(json.dumps(provisioned.json()))
        agent_env = {
            **os.environ,
            "THERMOWATCH_EDGE_SPOOL_PATH": str(work / "spool.sqlite3"),
            "THERMOWATCH_EDGE_SAMPLE_PERIOD_S": str(sample_period_s),
            "THERMOWATCH_EDGE_BATCH_MAX_AGE_S": "2",
        }
        agent_log = work / "edge.log"
        agent = _spawn(
            [*python, "edge", "run", "--bundle", str(bundle), "--simulate", str(sensors)],
            agent_env,
            agent_log,
        )
        stack.callback(_stop, agent)
        typer.echo(
            f"Thermowatch demo: API {api_url}/docs  ·  MQTT over TLS 127.0.0.1:{mqtt_port}  ·  "
            f"CoAP udp/{coap_port}  ·  database {database}"
        )
        typer.echo(f"Admin API key for this run (header 'Authorization: Bearer …'): {admin_key}")
        typer.echo(f"Readings: {api_url}/api/v1/devices/{device_id}/readings?bucket=1m\n")
        started = time.monotonic()
        try:
            while duration_s <= 0 or time.monotonic() - started < duration_s:
                time.sleep(min(5.0, max(0.5, duration_s / 4)) if duration_s else 5.0)
                if agent.poll() is not None:
                    raise RuntimeError(f"the edge agent exited:\n{agent_log.read_text()}")
                typer.echo(time.strftime("%H:%M:%S"))
                _show(api, device_id)
        except KeyboardInterrupt:
            typer.echo("stopping")
