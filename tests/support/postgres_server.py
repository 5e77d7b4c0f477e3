"""A private PostgreSQL server with TimescaleDB that a test may stop and restart.

The shared local server must not be restarted under other tests, so tests about database outages
get their own cluster (``initdb`` refuses to run as root, so it runs as the ``postgres`` user).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.net import free_port, port_open, wait_for


def _bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


class PrivatePostgres:
    def __init__(self, *, preload_timescaledb: bool = True) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tw-pg-"))
        self.data = self.root / "data"
        self.preload = preload_timescaledb
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=self.root)

    def init(self) -> PrivatePostgres:
        self._run(
            str(_bindir() / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        conf = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            "fsync = off",
            "timescaledb.telemetry_level = off",
        ]
        if self.preload:
            conf.append("shared_preload_libraries = 'timescaledb'")
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("\n".join(conf) + "\n")
        return self

    def start(self) -> PrivatePostgres:
        self._run(
            str(_bindir() / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )
        wait_for(lambda: port_open(self.port), 20, what="private postgres")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(_bindir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str = "thermowatch") -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
