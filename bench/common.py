"""Helpers every benchmark shares: a private Mosquitto, a temporary TimescaleDB database, the
collector as a subprocess, CPU accounting from ``/proc``, a py-spy profiler, percentiles, the
machine description and the generated sections of ``docs/benchmarks.md``.

Nothing here imports the test suite: a benchmark runs from a clean clone with only the venv.
"""

from __future__ import annotations

import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import psycopg
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
DOC_PATH = REPO / "docs" / "benchmarks.md"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
ADMIN_URL = os.environ.get(
    "THERMOWATCH_BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_STARTED = time.monotonic()

T = TypeVar("T")


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the result line."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now (TCP by default, UDP with ``socket.SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for(
    condition: Callable[[], T], timeout_s: float = 30.0, what: str = "", interval_s: float = 0.05
) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the service may not be up yet
            last_exc = exc
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what or condition}: {last_exc}")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=float), q))


# -- services ---------------------------------------------------------------------------------


class PrivateBroker:
    """A Mosquitto of the benchmark's own on a free port: anonymous, no persistence (nothing
    outlives the run), and in-flight/queue limits raised so the broker never drops load."""

    def __init__(self, workdir: Path, *, max_inflight: int = 1000) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.max_inflight = max_inflight
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivateBroker:
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence false",
                    # Started as root, mosquitto would otherwise switch to its own user.
                    "user root",
                    f"log_dest file {self.log_path}",
                    "log_type error",
                    "log_type warning",
                    f"max_inflight_messages {self.max_inflight}",
                    "max_queued_messages 1000000",
                    "max_queued_bytes 0",
                    "message_size_limit 262144",
                ]
            )
            + "\n"
        )
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for(lambda: port_open(self.port), 10, f"mosquitto on port {self.port}")
        return self

    def __exit__(self, *exc: object) -> None:
        _terminate(self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class TemporaryDatabase:
    """A database with the timescaledb extension on the local server, dropped on exit."""

    def __init__(self, prefix: str = "thermowatch_bench") -> None:
        self.name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        base, _, _ = ADMIN_URL.rpartition("/")
        self.url = f"{base}/{self.name}"

    def __enter__(self) -> TemporaryDatabase:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SET client_min_messages = warning")
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')

    def backend_pids(self) -> list[int]:
        """Server processes working for this database, plus the shared background writers."""
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE (datname = %s OR backend_type IN "
                "('walwriter', 'checkpointer', 'background writer')) AND pid <> pg_backend_pid()",
                (self.name,),
            ).fetchall()
        return [int(r[0]) for r in rows]


class Collector:
    """``thermowatch collector serve`` as a subprocess on free ports, read through /metrics."""

    def __init__(self, database_url: str, broker_port: int, workdir: Path, **settings: Any) -> None:
        self.http_port = free_port()
        self.coap_port = free_port(socket.SOCK_DGRAM)
        self.log_path = workdir / "collector.log"
        self.env = {
            **os.environ,
            "THERMOWATCH_DATABASE_URL": database_url,
            "THERMOWATCH_MQTT_PORT": str(broker_port),
            "THERMOWATCH_MQTT_CLIENT_ID": f"tw-bench-{uuid.uuid4().hex[:8]}",
            "THERMOWATCH_HTTP_PORT": str(self.http_port),
            "THERMOWATCH_COAP_PORT": str(self.coap_port),
            # Benchmarks measure CoAP on the loopback: plaintext accepted on purpose.
            "THERMOWATCH_COAP_PLAINTEXT_ALLOWED": "true",
        }
        for key, value in settings.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            self.env[f"THERMOWATCH_{key.upper()}"] = text
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Collector:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "thermowatch.cli", "collector", "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"collector exited:\n{self.log_path.read_text()[-3000:]}")
            return self.http.get(self.url + "/readyz", timeout=1).status_code == 200

        wait_for(ready, 60, "the collector to be ready", interval_s=0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        _terminate(self.proc, timeout_s=20)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        text = self.http.get(self.url + "/metrics").text
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return samples

    def stored(self, transport: str) -> int:
        """Readings this collector committed for one transport (its ingest counter)."""
        key = ("thermowatch_readings_ingested_total", (("transport", transport),))
        return int(self.metrics().get(key, 0.0))


def _terminate(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- CPU accounting and profiling -------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle/iowait since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


class CpuMeter:
    """CPU seconds used by named groups of processes between ``start`` and ``stop``, and by the
    whole machine (the rest is other work on the same machine, which skews a benchmark)."""

    def __init__(self, groups: dict[str, Iterable[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self._before: dict[int, float] = {}
        self._wall = 0.0
        self._machine = 0.0
        self.cores: dict[str, float] = {}
        self.machine = 0.0  # cores busy machine-wide

    def start(self) -> None:
        self._before = {pid: cpu_seconds(pid) for pids in self.groups.values() for pid in pids}
        self._machine = machine_busy_seconds()
        self._wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Average cores busy per group over the interval (1.0 = one core fully used)."""
        wall = max(time.monotonic() - self._wall, 1e-9)
        self.cores = {
            name: sum(max(cpu_seconds(pid) - self._before.get(pid, 0.0), 0.0) for pid in pids)
            / wall
            for name, pids in self.groups.items()
        }
        self.machine = (machine_busy_seconds() - self._machine) / wall
        return self.cores


class Profiler:
    """``py-spy record`` attached to a running process, writing collapsed stacks per thread.

    Non-blocking sampling: the target is never paused, so the profile costs it almost nothing
    (py-spy itself runs on the other core).
    """

    def __init__(self, pid: int, out: Path, rate_hz: int = 100) -> None:
        self.pid = pid
        self.out = out
        self.rate_hz = rate_hz
        self.proc: subprocess.Popen[bytes] | None = None
        exe = Path(sys.executable).parent / "py-spy"
        self.exe = str(exe) if exe.exists() else shutil.which("py-spy")

    @property
    def available(self) -> bool:
        return self.exe is not None

    def start(self) -> None:
        if self.exe is None:
            return
        self.proc = subprocess.Popen(
            [
                self.exe,
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "--rate",
                str(self.rate_hz),
                "--output",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> Profile | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.out.exists():
            return None
        return Profile.parse(self.out.read_text())


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` → ``func (module.py)``; line numbers split one function."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    # Keep a little of the path so that e.g. json/decoder.py and pipeline.py stay readable.
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{m.group('func')} ({short})"


@dataclass
class Profile:
    """Samples from py-spy's collapsed output: per thread, per function (self and total)."""

    total: int
    by_thread: Counter[str]
    self_time: Counter[str]
    inclusive: Counter[str]

    @classmethod
    def parse(cls, text: str) -> Profile:
        by_thread: Counter[str] = Counter()
        self_time: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in text.splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            # With --threads the first frame names the thread: 'thread (0x7f..)' or
            # 'process 123:"python ..."' first, then the thread.
            if frames and frames[0].startswith("process "):
                frames = frames[1:]
            thread = _thread_name(frames[0]) if frames else "?"
            calls = [_frame_name(f) for f in frames[1:]]
            total += count
            by_thread[thread] += count
            if calls:
                self_time[calls[-1]] += count
                for name in set(calls):
                    inclusive[name] += count
        return cls(total, by_thread, self_time, inclusive)

    def share(self, samples: int) -> float:
        return samples / self.total if self.total else 0.0


def _thread_name(frame: str) -> str:
    """``thread (2093): paho-mqtt-client-tw-1a2b`` → ``paho-mqtt-client`` (ids dropped)."""
    name = frame.partition("): ")[2] or frame
    if name.startswith("paho-mqtt-client"):
        return "paho-mqtt-client"
    return re.sub(r"[ _-]\(?\d+\)?$", "", name)


# -- the machine and the document -------------------------------------------------------------


def _command_output(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_description(database_url: str) -> dict[str, str]:
    """What the numbers were measured on: CPU, memory, OS and the versions of the services."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.exists():
        m = re.search(r'^PRETTY_NAME="?([^"\n]+)', release.read_text(), re.M)
        if m:
            os_name = m.group(1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        pg = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        ts = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        lic = conn.execute("SHOW timescaledb.license").fetchone()
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                "('shared_buffers', 'synchronous_commit', 'max_wal_size', 'wal_level')"
            ).fetchall()
        )
    mosquitto = _command_output([MOSQUITTO, "-h"]).splitlines()
    return {
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "memory": f"{mem_gib:.0f} GiB",
        "os": f"{os_name}, Linux {platform.release()}",
        "python": platform.python_version(),
        "postgresql": pg
        + ", "
        + ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
        + " (8kB pages)",
        "timescaledb": f"{ts[0] if ts else '?'} ({lic[0] if lic else '?'} edition)",
        "mosquitto": mosquitto[0] if mosquitto else "mosquitto",
        "load_average_before_the_run": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def replace_doc_section(name: str, body: str, path: Path = DOC_PATH) -> None:
    """Write ``body`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in the doc,
    keeping every other section as it is (each benchmark owns only its own)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def temporary_workdir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix)


def create_admin_key(
    env: dict[str, str], username: str | None = None, password: str | None = None
) -> str:
    """Create an admin through ``thermowatch collector create-admin`` and return its API key."""
    password = password or secrets.token_urlsafe(16)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "thermowatch.cli",
            "collector",
            "create-admin",
            "--username",
            username or f"admin-{secrets.token_hex(4)}",
            "--api-key",
            "automation",
        ],
        input=f"{password}\n{password}\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    ).stdout
    return out.strip().rsplit(" ", 1)[-1]
