"""Ingest benchmark: sustained readings/s stored through MQTT, CoAP and HTTP, publish → commit
latency at a paced 10,000 readings/s, and raw ``COPY`` into the same hypertable as the reference.

Run with no arguments (``python bench/ingest.py``). It starts its own TimescaleDB database, its
own Mosquitto and the real collector (``thermowatch collector serve``) as a subprocess, drives
them from load-generator processes, profiles the collector with py-spy during the MQTT phase,
rewrites the ingest section of ``docs/benchmarks.md`` and prints one JSON line last on stdout.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import math
import multiprocessing as mp
import queue
import random
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository importable (the venv installs only the product).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import (
    Collector,
    CpuMeter,
    PrivateBroker,
    Profile,
    Profiler,
    TemporaryDatabase,
    log,
    machine_description,
    percentile,
    replace_doc_section,
    temporary_workdir,
)
from collector.auth import hashing
from collector.config import Settings
from shared import protocol as p

DOC_SECTION = "ingest"
LATENCY_RATE_RPS = 10_000
GOAL_MQTT_RPS = 100_000
GOAL_MQTT_VS_COPY = 0.5
GOAL_P99_MS = 250.0

# -- the fleet ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceKind:
    """A kind of sender: how many readings it batches and how many probes it has."""

    name: str
    share: float  # of the devices
    batch_min: int
    batch_max: int
    sensors_min: int
    sensors_max: int
    period_s: int


# Edge agents (Raspberry Pi) forward their spool in batches of 100-1000 readings; MicroPython
# boards send what fits their heap, 10-50 readings.
EDGE = DeviceKind("edge", 0.3, 100, 1000, 4, 16, 1)
BOARD = DeviceKind("board", 0.7, 10, 50, 1, 4, 10)
FLEET = (EDGE, BOARD)
PROBE_FAULT_SHARE = 0.001  # about one reading in a thousand is a probe fault (power-on 85 °C)


@dataclass
class Device:
    device_id: str
    kind: DeviceKind
    sensors: list[str]
    value: float
    clock_s: int  # measurement time of its next reading (UTC seconds)
    seq: int = 0
    boot_id: str = "b0"


@dataclass
class Batch:
    device_id: str
    seq: int
    boot_id: str
    t0: int
    readings: list[tuple[str, int, float | None, int, str | None]] = field(default_factory=list)
    encoded: bytes = b""

    def payload(self) -> bytes:
        """The protocol v1 JSON bytes (encoded once; senders encode before the clock starts)."""
        if not self.encoded:
            self.encoded = p.encode_batch(
                self.device_id, self.seq, self.boot_id, self.t0, self.readings
            )
        return self.encoded

    def rows(self) -> Iterator[tuple[datetime, str, str, float | None, int, str | None]]:
        """The rows the collector would store for this batch (for the COPY reference)."""
        for sensor_id, dt_ms, value, quality, fault in self.readings:
            t = datetime.fromtimestamp(self.t0 + dt_ms / 1000, UTC)
            yield t, self.device_id, sensor_id, value, quality, fault


def make_fleet(prefix: str, count: int, start_s: int, seed: int) -> list[Device]:
    """``count`` devices of the fleet's mix, each with 1-Wire style probe ids."""
    rng = random.Random(seed)
    devices = []
    for i in range(count):
        kind = EDGE if rng.random() < EDGE.share else BOARD
        n = rng.randint(kind.sensors_min, kind.sensors_max)
        sensors = [f"28-{rng.getrandbits(40):010x}" for _ in range(n)]
        devices.append(
            Device(
                f"{prefix}-{kind.name}-{i:04d}",
                kind,
                sensors,
                value=rng.uniform(2.0, 30.0),
                clock_s=start_s,
                boot_id=f"{rng.getrandbits(32):08x}",
            )
        )
    return devices


def next_batch(device: Device, rng: random.Random) -> Batch:
    """The device's next batch: readings round-robin over its probes, one sample period apart,
    values a slow random walk in DS18B20 steps (1/16 °C), now and then a power-on fault."""
    kind = device.kind
    size = rng.randint(kind.batch_min, kind.batch_max)
    batch = Batch(device.device_id, device.seq, device.boot_id, device.clock_s)
    n_sensors = len(device.sensors)
    for j in range(size):
        dt_ms = (j // n_sensors) * kind.period_s * 1000
        sensor = device.sensors[j % n_sensors]
        if rng.random() < PROBE_FAULT_SHARE:
            batch.readings.append((sensor, dt_ms, None, p.Q_PROBE_FAULT, p.FAULT_POWER_ON))
            continue
        device.value += rng.choice((-0.0625, 0.0, 0.0, 0.0625))
        batch.readings.append((sensor, dt_ms, round(device.value * 16) / 16, p.Q_OK, None))
    device.seq += 1
    device.clock_s += math.ceil(size / n_sensors) * kind.period_s
    return batch


def fleet_batches(devices: list[Device], readings: int, seed: int) -> list[Batch]:
    """Rounds over the devices (each sends one batch per round, in shuffled order) until about
    ``readings`` readings were produced."""
    rng = random.Random(seed)
    batches: list[Batch] = []
    total = 0
    order = list(devices)
    while total < readings:
        rng.shuffle(order)
        for device in order:
            batch = next_batch(device, rng)
            batches.append(batch)
            total += len(batch.readings)
            if total >= readings:
                break
    return batches


# -- load-generator processes -------------------------------------------------------------------


@dataclass
class WorkerSpec:
    """What one load-generator process does; the devices ``index::workers`` are its own."""

    index: int
    workers: int
    prefix: str
    devices: int
    readings: int  # this worker's share
    start_s: int
    port: int
    seed: int
    token_key: str
    concurrency: int = 16
    rate_rps: float = 0.0  # paced sending (latency phase); 0 sends as fast as it can


def device_token(token_key: str, device_id: str) -> str:
    """The device's ingest credential (its hash is registered in the database)."""
    return hashlib.sha256(f"{token_key}:{device_id}".encode()).hexdigest()


def _worker_fleet(spec: WorkerSpec) -> tuple[list[Batch], list[Batch]]:
    """``(warm-up, measured)`` batches: one single-reading batch per device first (an hour
    before the measured data), so the collector has seen every device before the clock starts,
    as it has in a running fleet."""
    fleet = make_fleet(spec.prefix, spec.devices, spec.start_s, spec.seed)
    mine = fleet[spec.index :: spec.workers]
    warm = []
    for d in mine:
        warm.append(
            Batch(
                d.device_id,
                d.seq,
                d.boot_id,
                spec.start_s - 3600,
                [(d.sensors[0], 0, 20.0, 0, None)],
            )
        )
        d.seq += 1
    return warm, fleet_batches(mine, spec.readings, spec.seed * 1000 + spec.index)


def _mqtt_worker(spec: WorkerSpec, ready: Any, go: Any, results: Any) -> None:
    """One MQTT connection publishing the batches of its devices at QoS 1 and collecting the
    collector's application-level acks on ``tw/v1/<device>/ack``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    warm, batches = _worker_fleet(spec)
    sent_at: dict[tuple[str, int], float] = {}
    latencies: list[float] = []
    acked = {"batches": 0, "readings": 0, "rejected": 0, "last": 0.0, "want": len(warm)}
    all_acked = threading.Event()
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        now = time.monotonic()
        device = msg.topic.split("/")[2]
        ack = json.loads(msg.payload)
        with lock:
            sent = sent_at.pop((device, int(ack["seq"])), None)
            if sent is None:
                return  # a duplicate ack (QoS 1 re-delivery)
            latencies.append((now - sent) * 1000)
            acked["batches"] += 1
            acked["readings"] += ack["stored"] + ack["dup"]
            acked["rejected"] += ack["rej"]
            acked["last"] = now
            if acked["batches"] >= acked["want"]:
                all_acked.set()

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-{spec.prefix}-{spec.index}",
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_message = on_message
    client.connect("127.0.0.1", spec.port, keepalive=60)
    client.loop_start()
    device_ids = sorted({b.device_id for b in warm})
    client.subscribe([(p.topic(d, p.T_ACK), 1) for d in device_ids])
    time.sleep(0.3)  # the subscription must be in place before the first ack comes back

    def send(todo: list[Batch], started: float) -> None:
        due = started
        for b in todo:
            if spec.rate_rps:
                # Paced: a batch leaves when the readings sent before it are due at the rate.
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                due += len(b.readings) / spec.rate_rps
            payload = b.payload()
            with lock:
                sent_at[(b.device_id, b.seq)] = time.monotonic()
            client.publish(p.topic(b.device_id, p.T_READINGS), payload, qos=1)

    send(warm, time.monotonic())
    all_acked.wait(60)
    with lock:
        latencies.clear()
        acked.update(batches=0, readings=0, rejected=0, want=len(batches))
        all_acked.clear()
    for b in batches:
        b.payload()
    ready.put((spec.index, sum(len(b.readings) for b in batches), len(batches)))
    go.wait()
    cpu0 = time.process_time()
    started = time.monotonic()
    send(batches, started)
    all_acked.wait(150)
    cpu = time.process_time() - cpu0
    client.disconnect()
    client.loop_stop()
    results.put(
        {
            "index": spec.index,
            "readings": sum(len(b.readings) for b in batches),
            "batches": len(batches),
            "acked_batches": acked["batches"],
            "acked_readings": acked["readings"],
            "rejected": acked["rejected"],
            "started": started,
            "last": acked["last"],
            "cpu_s": cpu,
            "latencies_ms": latencies,
        }
    )


async def _send_concurrently(
    batches: list[Batch],
    concurrency: int,
    post: Callable[[Batch], Any],
) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight until every batch got its answer, with at most
    one request per device at a time (a device sends its next batch after the answer to the
    previous one). ``post`` returns ``(status, ack)``: "ok" with the ack, "busy" (retried
    shortly, as a device would) or "failed"."""
    per_device: dict[str, collections.deque[Batch]] = {}
    for b in batches:
        per_device.setdefault(b.device_id, collections.deque()).append(b)
    ready = collections.deque(per_device)
    in_flight = 0
    stats: dict[str, Any] = {"ok": 0, "readings": 0, "rejected": 0, "failed": 0, "busy": 0}
    stats["last"] = 0.0
    latencies: list[float] = []

    async def sender() -> None:
        nonlocal in_flight
        while ready or in_flight:
            if not ready:
                await asyncio.sleep(0.001)
                continue
            device = ready.popleft()
            b = per_device[device].popleft()
            in_flight += 1
            sent = time.monotonic()
            status, ack = await post(b)
            now = time.monotonic()
            in_flight -= 1
            if status == "busy":
                stats["busy"] += 1
                per_device[device].appendleft(b)
                await asyncio.sleep(0.05)
            elif status != "ok":
                stats["failed"] += 1
                stats.setdefault("errors", []).append(str(ack)[:120])
            else:
                stats["ok"] += 1
                stats["readings"] += ack["stored"] + ack["dup"]
                stats["rejected"] += ack["rej"]
                stats["last"] = now
                latencies.append((now - sent) * 1000)
            if per_device[device]:
                ready.append(device)

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    stats["latencies_ms"] = latencies
    return stats


def _coap_worker(spec: WorkerSpec, ready: Any, go: Any, results: Any) -> None:
    """Confirmable CoAP POSTs (JSON, Content-Format 50) with the device token in ``?t=``,
    ``concurrency`` requests in flight."""
    import aiocoap
    from aiocoap.numbers.contentformat import ContentFormat

    warm, batches = _worker_fleet(spec)
    for b in batches:
        b.payload()
    base = f"coap://127.0.0.1:{spec.port}"

    async def main() -> dict[str, Any]:
        ctx = await aiocoap.Context.create_client_context()

        async def post(b: Batch) -> tuple[str, Any]:
            token = device_token(spec.token_key, b.device_id)
            msg = aiocoap.Message(
                code=aiocoap.POST,
                uri=f"{base}/{p.topic(b.device_id, p.T_READINGS)}?t={token}",
                payload=b.payload(),
                content_format=ContentFormat.JSON,
                transport_tuning=aiocoap.Reliable,
            )
            try:
                response = await ctx.request(msg).response
            except Exception:  # aiocoap raises its own types for timeouts and resets
                return "failed", None
            if response.code == aiocoap.SERVICE_UNAVAILABLE:
                return "busy", None
            if not response.code.is_successful():
                return "failed", response.payload[:200]
            return "ok", json.loads(response.payload)

        await _send_concurrently(warm, spec.concurrency, post)
        ready.put((spec.index, sum(len(b.readings) for b in batches), len(batches)))
        await asyncio.to_thread(go.wait)
        cpu0 = time.process_time()
        started = time.monotonic()
        stats = await _send_concurrently(batches, spec.concurrency, post)
        stats["cpu_s"] = time.process_time() - cpu0
        await ctx.shutdown()
        return {"started": started, **stats}

    out = asyncio.run(main())
    results.put({"index": spec.index, "readings": sum(len(b.readings) for b in batches), **out})


def _http_worker(spec: WorkerSpec, ready: Any, go: Any, results: Any) -> None:
    """``POST /api/v1/ingest`` with the device's bearer token over keep-alive connections,
    ``concurrency`` requests in flight."""
    import httpx

    warm, batches = _worker_fleet(spec)
    for b in batches:
        b.payload()
    url = f"http://127.0.0.1:{spec.port}{p.HTTP_INGEST_PATH}"

    async def main() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=spec.concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:

            async def post(b: Batch) -> tuple[str, Any]:
                headers = {
                    "content-type": "application/json",
                    "authorization": f"Bearer {device_token(spec.token_key, b.device_id)}",
                }
                try:
                    response = await client.post(url, content=b.payload(), headers=headers)
                except httpx.HTTPError:
                    return "failed", None
                if response.status_code == 503:
                    return "busy", None
                if response.status_code != 200:
                    return "failed", response.text[:200]
                return "ok", response.json()

            await _send_concurrently(warm, spec.concurrency, post)
            ready.put((spec.index, sum(len(b.readings) for b in batches), len(batches)))
            await asyncio.to_thread(go.wait)
            cpu0 = time.process_time()
            started = time.monotonic()
            stats = await _send_concurrently(batches, spec.concurrency, post)
            stats["cpu_s"] = time.process_time() - cpu0
            return {"started": started, **stats}

    out = asyncio.run(main())
    results.put({"index": spec.index, "readings": sum(len(b.readings) for b in batches), **out})


@dataclass
class PhaseResult:
    name: str
    readings: int  # sent
    stored: int  # the collector's counter delta over the phase
    seconds: float  # first send → last commit
    latencies_ms: list[float]
    workers: list[dict[str, Any]]
    cpu_cores: dict[str, float] = field(default_factory=dict)
    progress: list[tuple[float, int]] = field(default_factory=list)
    profile: Profile | None = None

    @property
    def rps(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else 0.0


def run_phase(
    name: str,
    target: Callable[[WorkerSpec, Any, Any, Any], None],
    specs: list[WorkerSpec],
    collector: Collector,
    transport: str,
    *,
    meter_groups: dict[str, Callable[[], list[int]]] | None = None,
    profiler: Profiler | None = None,
    timeout_s: float = 180,
) -> PhaseResult:
    """Start the workers, let them prepare, start them together, and follow the collector's
    stored counter until every reading sent is committed (or the timeout)."""
    ctx = mp.get_context("fork")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=target, args=(s, ready, go, results), daemon=True) for s in specs]
    for proc in procs:
        proc.start()
    expected = 0
    batches = 0
    for _ in specs:
        _, readings, n = ready.get(timeout=120)
        expected += readings
        batches += n
    log(f"{name}: {len(specs)} senders ready: {expected:,} readings in {batches:,} batches")
    before = collector.stored(transport)
    meter = CpuMeter({group: pids() for group, pids in (meter_groups or {}).items()})
    meter.start()
    if profiler is not None:
        profiler.start()
    started = time.monotonic()
    go.set()
    progress: list[tuple[float, int]] = []
    deadline = started + timeout_s
    stored = 0
    last_commit = started
    last_report = started
    outs: list[dict[str, Any]] = []
    # Done when every sender has its acks/responses (so every reading it sent was committed or
    # rejected), or at the timeout.
    while len(outs) < len(specs) and time.monotonic() < deadline:
        now = time.monotonic()
        stored = collector.stored(transport) - before
        if not progress or stored != progress[-1][1]:
            last_commit = now
        progress.append((now - started, stored))
        if now - last_report >= 5:
            log(f"{name}: {stored:,}/{expected:,} stored after {now - started:.0f}s")
            last_report = now
        with contextlib.suppress(queue.Empty):
            # A slow poll: every /metrics scrape costs the collector CPU.
            outs.append(results.get(timeout=0.25))
    cpu = meter.stop()
    profile = profiler.stop() if profiler is not None else None
    stored = collector.stored(transport) - before
    if len(outs) < len(specs):
        log(f"{name}: not finished after {timeout_s:.0f}s")
        go.clear()
        for proc in procs:
            proc.terminate()
    for proc in procs:
        proc.join(10)
    if not outs:
        raise RuntimeError(f"{name}: no sender finished")
    # The end is the last commit: the latest ack/response a sender saw, or failing that the
    # moment the counter last moved (a 50 ms poll).
    last_ack = max(o["last"] for o in outs)
    end = last_ack if last_ack > started else last_commit
    first = min(o["started"] for o in outs)
    # Senders measure their own CPU time: they have exited by now.
    cpu["load generators"] = sum(o["cpu_s"] for o in outs) / max(end - first, 1e-9)
    cpu["everything else on the machine"] = max(meter.machine - sum(cpu.values()), 0.0)
    latencies = [x for o in outs for x in o["latencies_ms"]]
    for o in outs:
        o.pop("latencies_ms")
        if o.get("failed") or o.get("rejected"):
            log(
                f"{name}: sender {o['index']}: {o.get('failed', 0)} failed batches "
                f"{sorted(set(o.get('errors', [])))[:3]}, "
                f"{o.get('rejected', 0)} rejected readings"
            )
    result = PhaseResult(
        name, expected, stored, end - first, latencies, outs, cpu, progress, profile
    )
    log(
        f"{name}: {stored:,} of {expected:,} stored in {result.seconds:.1f}s = "
        f"{result.rps:,.0f} readings/s"
    )
    return result


# -- the COPY reference ---------------------------------------------------------------------------


def copy_reference(
    database_url: str, readings: int, start_s: int, group_rows: int, devices: int
) -> tuple[int, float]:
    """``COPY readings FROM STDIN`` of rows of the same fleet shape into the same hypertable,
    in a time range of its own, one transaction per ``group_rows`` rows (the collector's group
    size). The rows are built before the clock starts: this measures the database."""
    fleet = make_fleet("copy", devices, start_s, seed=7)
    rows = [row for b in fleet_batches(fleet, readings, seed=7) for row in b.rows()]
    sql = "COPY readings (time, device_id, sensor_id, value, quality, fault) FROM STDIN"
    with psycopg.connect(database_url) as conn:
        started = time.perf_counter()
        for i in range(0, len(rows), group_rows):
            with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as copy:
                for row in rows[i : i + group_rows]:
                    copy.write_row(row)
        seconds = time.perf_counter() - started
    return len(rows), seconds


# -- the report ---------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def _profile_table(profile: Profile, top: int = 15) -> list[str]:
    lines = [
        "| function | self | total |",
        "|---|---:|---:|",
    ]
    for name, samples in profile.self_time.most_common(top):
        lines.append(
            f"| `{name}` | {profile.share(samples):.1%} | "
            f"{profile.share(profile.inclusive[name]):.1%} |"
        )
    return lines


def _stage_table(profile: Profile) -> list[str]:
    """Inclusive time of the collector's own stages, the ones worth optimising."""
    stages = [
        (
            "MQTT network thread (paho loop: read, PUBACK, callbacks)",
            "Client._loop (mqtt/client.py)",
        ),
        ("on_message → pipeline.submit", "MqttIngest._on_message (ingest/mqtt.py)"),
        ("pipeline.prepare (decode + validate)", "IngestPipeline.prepare (ingest/pipeline.py)"),
        ("json.loads of the payload", "parse_payload (shared/decode.py)"),
        ("decode_object (per-record structure checks)", "decode_object (shared/decode.py)"),
        ("valid_id (sensor id check, per reading)", "valid_id (shared/protocol.py)"),
        ("dataclass constructors (Reading, …)", "__create_fn__.<locals>.__init__ (<string>)"),
        ("check_reading (range and clock checks)", "check_reading (ingest/validate.py)"),
        ("device registry look-ups", "DeviceRegistry.allowed (ingest/registry.py)"),
        ("writer thread: group commit", "GroupCommitWriter._commit (ingest/writer.py)"),
        ("writer: COPY rows into staging (client side)", "Copy.write_row (psycopg/_copy.py)"),
        ("writer: waiting for PostgreSQL", "Connection.wait (psycopg/connection.py)"),
        (
            "writer: MQTT ack + PUBACK per batch",
            "MqttIngest._on_message.<locals>.done (ingest/mqtt.py)",
        ),
        ("alert engine thread (rules over each commit)", "AlertEngine._run (alerts/engine.py)"),
        ("/metrics scrapes (the benchmark's own polling)", "metrics_endpoint (routes/health.py)"),
    ]
    lines = ["| stage | share of samples |", "|---|---:|"]
    for label, key in stages:
        samples = sum(v for k, v in profile.inclusive.items() if k == key)
        if samples:
            lines.append(f"| {label} | {profile.share(samples):.1%} |")
    return lines


def write_doc(
    results: dict[str, Any],
    phases: dict[str, PhaseResult],
    copy_rows: int,
    copy_s: float,
    machine: dict[str, str],
    settings: dict[str, Any],
    total_s: float,
) -> None:
    mqtt = phases["mqtt"]
    lat = phases["latency"]
    goal = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    lines = [
        "## Ingest (`bench/ingest.py`)",
        "",
        "Generated by `python bench/ingest.py` (no arguments, "
        f"{total_s:.0f} s wall time); every number below comes from that run.",
        "",
        "### Machine",
        "",
        *[f"- **{k.replace('_', ' ')}**: {v}" for k, v in machine.items()],
        "- The load generators, Mosquitto, PostgreSQL and the collector all share these cores.",
        "",
        "### Results",
        "",
        "| measurement | value | goal |",
        "|---|---:|---|",
        f"| MQTT sustained, readings/s stored | {_fmt(results['mqtt_rps'])} | "
        f"≥ {_fmt(GOAL_MQTT_RPS)}: {goal(results['mqtt_rps'] >= GOAL_MQTT_RPS)} |",
        f"| raw `COPY` into the hypertable, rows/s | {_fmt(results['copy_rps'])} | reference |",
        f"| MQTT ÷ COPY | {results['mqtt_vs_copy']:.2f} | "
        f"≥ {GOAL_MQTT_VS_COPY}: {goal(results['mqtt_vs_copy'] >= GOAL_MQTT_VS_COPY)} |",
        f"| CoAP sustained, readings/s stored | {_fmt(results['coap_rps'])} | |",
        f"| HTTP sustained, readings/s stored | {_fmt(results['http_rps'])} | |",
        f"| publish → commit p50 at {_fmt(LATENCY_RATE_RPS)} readings/s, ms | "
        f"{results['p50_ms']:.1f} | |",
        f"| publish → commit p99 at {_fmt(LATENCY_RATE_RPS)} readings/s, ms | "
        f"{results['p99_ms']:.1f} | < {GOAL_P99_MS:.0f}: {goal(results['p99_ms'] < GOAL_P99_MS)} |",
        "",
        "### How it is measured",
        "",
        f"- Fleet: {settings['devices']} devices per phase, {EDGE.share:.0%} edge agents "
        f"(batches of {EDGE.batch_min}-{EDGE.batch_max} readings, {EDGE.sensors_min}-"
        f"{EDGE.sensors_max} probes) and {BOARD.share:.0%} boards ({BOARD.batch_min}-"
        f"{BOARD.batch_max} readings, {BOARD.sensors_min}-{BOARD.sensors_max} probes); "
        "protocol v1 JSON batches from `shared.protocol.encode_batch`, about 0.1 % probe faults. "
        "Each phase uses its own device ids and its own time range, so every reading is new.",
        "- Senders run in separate processes (no shared GIL) and prepare their payloads before "
        "the clock starts. MQTT: one paho-mqtt connection per process, QoS 1, up to 1000 "
        "messages in flight, each process subscribed to its devices' `tw/v1/<device>/ack`. "
        f"CoAP: aiocoap, confirmable POSTs, {settings['coap_concurrency']} in flight per "
        f"process. HTTP: httpx, {settings['http_concurrency']} keep-alive connections per "
        "process.",
        "- Sustained rate = readings committed (the collector's "
        "`thermowatch_readings_ingested_total`, checked against `count(*)` of the phase's "
        "rows) ÷ time from the first send to the last commit (the last application-level ack "
        "or response, which is sent right after the commit).",
        f"- Latency: {settings['latency_workers']} MQTT senders paced to "
        f"{_fmt(LATENCY_RATE_RPS)} readings/s in total for {settings['latency_s']:.0f} s; "
        "each batch's time from `publish()` to the arrival of its ack "
        f"({len(lat.latencies_ms):,} batches).",
        f"- COPY reference: `COPY readings (...) FROM STDIN` with psycopg 3 of {_fmt(copy_rows)} "
        "rows of the same fleet shape into the same hypertable (same unique index, a time range "
        f"of its own), one transaction per {_fmt(settings['group_rows'])} rows (the collector's "
        f"group size); rows prepared before the clock starts. {copy_s:.1f} s.",
        f"- Collector settings: group commit up to {_fmt(settings['group_rows'])} readings or "
        f"{settings['max_wait_ms']} ms; Mosquitto without persistence, max_inflight_messages "
        f"{settings['broker_inflight']}.",
        "",
        "### Phases",
        "",
        "| phase | readings sent | stored | seconds | readings/s | senders |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for ph in phases.values():
        lines.append(
            f"| {ph.name} | {_fmt(ph.readings)} | {_fmt(ph.stored)} | {ph.seconds:.1f} | "
            f"{_fmt(ph.rps)} | {len(ph.workers)} |"
        )
    lines.append(
        f"| COPY reference | {_fmt(copy_rows)} | {_fmt(copy_rows)} | {copy_s:.1f} | "
        f"{_fmt(results['copy_rps'])} | 1 |"
    )
    lines += [
        "",
        "### Where the time goes (MQTT phase)",
        "",
        "Average cores busy per process group during the MQTT phase (2.0 = both cores):",
        "",
        "| process | cores |",
        "|---|---:|",
        *[f"| {k} | {v:.2f} |" for k, v in mqtt.cpu_cores.items()],
    ]
    if mqtt.profile is not None and mqtt.profile.total:
        prof = mqtt.profile
        lines += [
            "",
            f"py-spy (`record --nonblocking --threads`, {prof.total:,} samples of the collector "
            "process at 100 Hz; idle threads not sampled). Share of samples per thread:",
            "",
            "| thread | share |",
            "|---|---:|",
            *[f"| {t} | {prof.share(n):.1%} |" for t, n in prof.by_thread.most_common(6)],
            "",
            "Collector stages (inclusive):",
            "",
            *_stage_table(prof),
            "",
            "Top functions by own time (self) with their inclusive time (total):",
            "",
            *_profile_table(prof),
        ]
    lines += ["", "### What limits it", "", *settings["findings"]]
    replace_doc_section(DOC_SECTION, "\n".join(lines))


def findings(phases: dict[str, PhaseResult], copy_rps: float, profile: Profile | None) -> list[str]:
    """Statements derived from this run's numbers."""
    mqtt = phases["mqtt"]
    cores = mqtt.cpu_cores
    ours = sum(v for k, v in cores.items() if k != "everything else on the machine")
    other = cores.get("everything else on the machine", 0.0)
    col, pg = cores.get("collector", 0.0), cores.get("postgresql", 0.0)
    out = [
        f"- MQTT reached {mqtt.rps / copy_rps:.2f}× raw COPY ({_fmt(mqtt.rps)} vs "
        f"{_fmt(copy_rps)} rows/s).",
        f"- CPU during the MQTT phase: the collector {col:.2f} cores, PostgreSQL {pg:.2f}, "
        f"Mosquitto {cores.get('mosquitto', 0.0):.2f}, the load generators "
        f"{cores.get('load generators', 0.0):.2f}: {ours:.2f} of 2 cores; other work on the "
        f"machine took {other:.2f}. The collector is one Python process, so its decoding and "
        "its writers share one GIL: about 1.0 core is its ceiling; PostgreSQL's insert into "
        "the unique index (`INSERT ... ON CONFLICT DO NOTHING`) costs more per row than a "
        "plain COPY, which is the price of idempotency. More collector processes on more "
        "cores raise the ceiling; on this 2-core machine they would compete with PostgreSQL.",
    ]
    if other > 0.3:
        out.append(
            f"- Other work on this machine took {other:.2f} of its 2 cores during the MQTT "
            "phase, so the rates above are lower bounds; re-run on an idle machine."
        )
    elif col < 0.9 and pg < 0.9:
        out.append(
            "- Neither the collector nor PostgreSQL used a full core: the stages still wait for "
            "each other (decoding, copying rows in and committing are serial per group; two "
            "writer connections overlap two groups)."
        )
    if profile is not None and profile.total:
        inc = profile.inclusive

        def share(key: str) -> float:
            return profile.share(inc.get(key, 0))

        decode = share("decode_object (shared/decode.py)")
        valid = share("valid_id (shared/protocol.py)")
        check = share("check_reading (ingest/validate.py)")
        writer = share("GroupCommitWriter._commit (ingest/writer.py)")
        copy_rows = share("Copy.write_row (psycopg/_copy.py)")
        out.append(
            f"- In the collector, per-record decoding (`decode_object`) takes {decode:.0%} of "
            f"the samples (`valid_id` {valid:.0%}: sensor ids are checked once and remembered), "
            f"`check_reading` {check:.0%} (only readings off the fast path); the writers' "
            f"commits {writer:.0%}, of which {copy_rows:.0%} is handing rows to binary COPY."
        )
        alerts = share("AlertEngine._run (alerts/engine.py)")
        if alerts:
            out.append(
                f"- The alert engine's thread took {alerts:.0%} of the collector's samples: it "
                "evaluates every committed group under the same GIL as ingest."
            )
    return out


# -- main -----------------------------------------------------------------------------------------


def register_fleets(
    database_url: str, fleets: list[tuple[str, int, int]], devices: int, token_key: str
) -> None:
    """Register every device the senders will use, with the hash of its ingest token, the way
    provisioning does: the collector then runs with auto-registration off, as in production."""
    rows = []
    for prefix, start, seed in fleets:
        for d in make_fleet(prefix, devices, start, seed):
            rows.append((d.device_id, hashing.digest(device_token(token_key, d.device_id))))
    sql = "COPY devices (device_id, token_hash) FROM STDIN"
    with psycopg.connect(database_url) as conn, conn.cursor() as cur, cur.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)
    log(f"registered {len(rows):,} devices")


def count_rows(database_url: str, prefix: str, start_s: int) -> int:
    """Rows of one phase's devices in its measured time range (the warm-up batches lie an hour
    before it)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM readings WHERE device_id LIKE %s AND time >= to_timestamp(%s)",
            (prefix + "-%", start_s),
        ).fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every phase's size")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--keep", type=Path, help="copy the collector log and the raw profile into this folder"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a collector setting for this run (e.g. ingest_max_wait_ms=5); default: its defaults",
    )
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    wall = time.monotonic()
    scale = args.scale

    devices = 500
    mqtt_readings = int(1_500_000 * scale)
    coap_readings = int(150_000 * scale)
    http_readings = int(300_000 * scale)
    latency_s = 15.0 * max(min(scale, 1.0), 0.2)
    # The collector's own defaults unless overridden with --set.
    fields = Settings.model_fields
    group_rows = int(
        overrides.get("ingest_batch_max_readings", fields["ingest_batch_max_readings"].default)
    )
    max_wait_ms = int(overrides.get("ingest_max_wait_ms", fields["ingest_max_wait_ms"].default))
    broker_inflight = 1000
    now_s = int(time.time())
    day = 86_400
    settings: dict[str, Any] = {
        "devices": devices,
        "coap_concurrency": 32,
        "http_concurrency": 16,
        "latency_workers": 2,
        "latency_s": latency_s,
        "group_rows": group_rows,
        "max_wait_ms": max_wait_ms,
        "broker_inflight": broker_inflight,
    }

    token_key = secrets.token_hex(16)
    # (phase, device prefix, start of its time range, seed, target port kind, readings, workers)
    plans = {
        "mqtt": ("mqtt", now_s - 5 * day, 11, mqtt_readings),
        "latency": ("lat", now_s - 2 * 3600, 13, int(LATENCY_RATE_RPS * latency_s)),
        "coap": ("coap", now_s - 4 * day, 17, coap_readings),
        "http": ("http", now_s - 3 * day, 19, http_readings),
    }

    with (
        temporary_workdir("tw-bench-ingest-") as tmp,
        TemporaryDatabase() as db,
        PrivateBroker(Path(tmp), max_inflight=broker_inflight) as broker,
    ):
        log(f"database {db.name}, broker on port {broker.port}; starting the collector")
        # Production mode: devices must be registered, CoAP and HTTP senders show their tokens.
        with Collector(
            db.url,
            broker.port,
            Path(tmp),
            auto_register_devices=False,
            secret_key=secrets.token_urlsafe(48),
            **overrides,
        ) as collector:
            machine = machine_description(db.url)
            register_fleets(
                db.url,
                [(prefix, start, seed) for prefix, start, seed, _ in plans.values()],
                devices,
                token_key,
            )

            log(f"COPY reference: {mqtt_readings:,} rows")
            copy_rows, copy_s = copy_reference(
                db.url, mqtt_readings, now_s - 6 * day, group_rows, devices
            )
            copy_rps = copy_rows / copy_s
            log(f"COPY reference: {copy_rows:,} rows in {copy_s:.1f}s = {copy_rps:,.0f} rows/s")

            def specs(phase: str, port: int, workers: int = 2, **extra: Any) -> list[WorkerSpec]:
                prefix, start, seed, readings = plans[phase]
                return [
                    WorkerSpec(
                        i,
                        workers,
                        prefix,
                        devices,
                        readings // workers,
                        start,
                        port,
                        seed,
                        token_key,
                        **extra,
                    )
                    for i in range(workers)
                ]

            meter_groups = {
                "collector": lambda: [collector.pid],
                "mosquitto": lambda: [broker.pid],
                "postgresql": db.backend_pids,
            }
            profiler = Profiler(collector.pid, Path(tmp) / "mqtt.pyspy.txt")
            if not profiler.available:
                log("py-spy not found: the MQTT phase runs without a profile")
            phases: dict[str, PhaseResult] = {}
            phases["mqtt"] = run_phase(
                "mqtt",
                _mqtt_worker,
                specs("mqtt", broker.port),
                collector,
                "mqtt",
                meter_groups=meter_groups,
                profiler=profiler,
            )
            phases["latency"] = run_phase(
                "latency",
                _mqtt_worker,
                specs("latency", broker.port, rate_rps=LATENCY_RATE_RPS / 2),
                collector,
                "mqtt",
                meter_groups=meter_groups,
            )
            phases["coap"] = run_phase(
                "coap",
                _coap_worker,
                specs("coap", collector.coap_port, concurrency=settings["coap_concurrency"]),
                collector,
                "coap",
                meter_groups=meter_groups,
            )
            phases["http"] = run_phase(
                "http",
                _http_worker,
                specs("http", collector.http_port, concurrency=settings["http_concurrency"]),
                collector,
                "http",
                meter_groups=meter_groups,
            )

            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for f in Path(tmp).iterdir():
                    if f.is_file():
                        shutil.copy(f, args.keep / f.name)
            for name in ("mqtt", "coap", "http"):
                in_db = count_rows(db.url, plans[name][0], plans[name][1])
                if in_db != phases[name].stored:
                    log(f"warning: {name}: counter says {phases[name].stored:,}, table {in_db:,}")

    lat = phases["latency"].latencies_ms
    mqtt_rps = phases["mqtt"].rps
    results = {
        "mqtt_rps": round(mqtt_rps),
        "coap_rps": round(phases["coap"].rps),
        "http_rps": round(phases["http"].rps),
        "copy_rps": round(copy_rps),
        "mqtt_vs_copy": round(mqtt_rps / copy_rps, 3),
        "p50_ms": round(percentile(lat, 50), 1),
        "p99_ms": round(percentile(lat, 99), 1),
    }
    settings["findings"] = findings(phases, copy_rps, phases["mqtt"].profile)
    total_s = time.monotonic() - wall
    if not args.no_doc:
        write_doc(results, phases, copy_rows, copy_s, machine, settings, total_s)
        log("docs/benchmarks.md: ingest section rewritten")
    log(f"done in {total_s:.0f}s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
