"""Start Thermowatch programs as real subprocesses (the way users run them) for tests."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.common import create_admin_key, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]


def thermowatch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "thermowatch.cli", *args]


class ManagedProcess:
    """A subprocess with its own log file, which tests can stop, kill and restart."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.args = args
        self.env = env
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 15) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class CollectorProcess(ManagedProcess):
    def __init__(self, env: dict[str, str], http_port: int, coap_port: int, name: str) -> None:
        super().__init__(thermowatch_command("collector", "serve"), env, name)
        self.http_port = http_port
        self.coap_port = coap_port
        self._admin_key: str | None = None
        # Served over HTTPS: the CA file that verifies it (start_collector's http_ca_file).
        self.https = bool(env.get("THERMOWATCH_HTTP_TLS_CERT_FILE"))
        self.http_verify: ssl.SSLContext | bool = True

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.http_port}"

    def wait_ready(self, timeout_s: float = 30) -> CollectorProcess:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log()}")
            resp = httpx.get(self.url + "/readyz", timeout=1, verify=self.http_verify)
            return resp.status_code == 200

        try:
            wait_for(ready, timeout_s, what=f"{self.name} ready")
        except TimeoutError:
            raise TimeoutError(f"{self.name} not ready:\n{self.log()}") from None
        return self

    def start(self) -> CollectorProcess:
        super().start()
        return self

    def admin_client(self) -> httpx.Client:
        """An HTTP client authenticated as a new admin (created with ``create-admin``)."""
        if self._admin_key is None:
            self._admin_key = create_admin_key(self.env)
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self._admin_key}"}, timeout=10
        )


def start_collector(
    database_url: str,
    broker_port: int | None,
    *,
    name: str = "collector",
    client_id: str | None = None,
    auto_register: bool = True,
    wait: bool = True,
    http_ca_file: str | None = None,
    **settings: Any,
) -> CollectorProcess:
    """Start ``thermowatch collector serve`` on free ports against the given DB and broker.

    ``settings`` become ``THERMOWATCH_<NAME>`` environment variables.
    """
    http_port, coap_port = free_port(), free_port(socket.SOCK_DGRAM)
    env = {
        **os.environ,
        "THERMOWATCH_DATABASE_URL": database_url,
        "THERMOWATCH_HTTP_PORT": str(http_port),
        "THERMOWATCH_COAP_PORT": str(coap_port),
        "THERMOWATCH_AUTO_REGISTER_DEVICES": "true" if auto_register else "false",
        # Tests exercise the CoAP paths on the loopback; production leaves plaintext CoAP off.
        "THERMOWATCH_COAP_PLAINTEXT_ALLOWED": "true",
        "THERMOWATCH_MQTT_CLIENT_ID": client_id or f"tw-test-{name}-{http_port}",
        # A group of its own unless a test shares one on purpose: a stopped collector's
        # persistent session would otherwise keep receiving its share of the messages.
        "THERMOWATCH_MQTT_SHARED_GROUP": f"tw-test-{http_port}",
        "THERMOWATCH_SECRET_KEY": secrets.token_urlsafe(32),
    }
    if broker_port is None:
        env["THERMOWATCH_MQTT_ENABLED"] = "false"
    else:
        env["THERMOWATCH_MQTT_PORT"] = str(broker_port)
    for key, value in settings.items():
        env[f"THERMOWATCH_{key.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    proc = CollectorProcess(env, http_port, coap_port, name)
    if http_ca_file:
        proc.http_verify = ssl.create_default_context(cafile=http_ca_file)
    proc.start()
    return proc.wait_ready() if wait else proc
