"""A private Mosquitto broker per test session, on a free port, with a generated config.

Tests own it: they can stop, kill and restart it, and give it password and ACL files.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
from pathlib import Path

from collector.tls import TlsFiles
from tests.support.net import free_port, port_open, wait_for

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class MosquittoBroker:
    """A mosquitto process with its own config, persistence folder and log."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        allow_anonymous: bool = True,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        extra_config: str = "",
        dynsec_config: Path | None = None,
        collector_password_file: Path | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.allow_anonymous = allow_anonymous
        self.password_file = password_file
        self.acl_file = acl_file
        self.extra_config = extra_config
        self.dynsec_config = dynsec_config
        # With its own password file, collectors get a listener of their own and the devices'
        # listener binds client ids to user names (as deploy/mosquitto/mosquitto.conf does).
        self.collector_password_file = collector_password_file
        self.collector_port = free_port() if collector_password_file else self.port
        # A TLS listener for devices, with the same accounts as the plaintext one.
        self.tls = tls
        self.tls_port = free_port() if tls else 0
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            # Root-started mosquitto drops to user 'mosquitto' and then cannot write here.
            "user root",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "message_size_limit 262144",
        ]
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        if self.collector_password_file:
            lines = ["per_listener_settings true", *lines, "use_username_as_clientid true"]
            lines += [
                f"listener {self.collector_port} 127.0.0.1",
                "allow_anonymous false",
                f"password_file {self.collector_password_file}",
            ]
            if self.acl_file:
                lines.append(f"acl_file {self.acl_file}")
        if self.tls:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "tls_version tlsv1.2",
            ]
            if self.collector_password_file:
                # Per-listener settings: the device listener's accounts and binding again.
                lines.append(f"allow_anonymous {'true' if self.allow_anonymous else 'false'}")
                if self.password_file:
                    lines.append(f"password_file {self.password_file}")
                if self.acl_file:
                    lines.append(f"acl_file {self.acl_file}")
                lines.append("use_username_as_clientid true")
        if self.dynsec_config:
            lines.append(f"plugin {dynsec_plugin()}")
            lines.append(f"plugin_opt_config_file {self.dynsec_config}")
        self.config_path.write_text("\n".join(lines) + "\n" + self.extra_config)

    def start(self) -> MosquittoBroker:
        self.write_config()
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(
                lambda: (
                    port_open(self.port)
                    and port_open(self.collector_port)
                    and (not self.tls or port_open(self.tls_port))
                ),
                10,
                what=f"mosquitto on {self.port}",
            )
        except TimeoutError:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise RuntimeError(f"mosquitto did not start: {err}\n{self.log()}") from None
        return self

    def reload(self) -> None:
        """Re-read password and ACL files without restarting (SIGHUP)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def add_password(password_file: Path, username: str, password: str) -> None:
    """Add or replace a user in a mosquitto password file (hashed by mosquitto_passwd)."""
    args = ["mosquitto_passwd", "-b", str(password_file), username, password]
    if not password_file.exists():
        args.insert(1, "-c")
    subprocess.run(args, check=True, capture_output=True, env={**os.environ})


def dynsec_plugin() -> str:
    """Where the distribution installed Mosquitto's dynamic-security plugin."""
    try:
        listed = subprocess.run(
            ["dpkg", "-L", "mosquitto"], capture_output=True, text=True, check=False
        ).stdout.split()
    except FileNotFoundError:
        listed = []
    found = [f for f in listed if f.endswith("/mosquitto_dynamic_security.so")]
    found += glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")
    found += glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    if not found:
        raise RuntimeError("Mosquitto's dynamic-security plugin is not installed")
    return found[0]


def init_dynsec(config_file: Path, admin_username: str, admin_password: str) -> None:
    """A new plugin state file holding only the admin account (``mosquitto_ctrl dynsec init``)."""
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(config_file), admin_username, admin_password],
        check=True,
        capture_output=True,
    )
