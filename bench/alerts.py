"""Alert benchmark: time from publishing a reading that crosses a threshold to the alert arriving
on the live stream (``GET /api/v1/alerts/stream``), while a fleet publishes 10,000 readings/s
in the background and a default rule evaluates every one of them.

Run with no arguments (``python bench/alerts.py``). It starts its own TimescaleDB database, its
own Mosquitto and the real collector as a subprocess, publishes the background load from a
separate process, writes the "benchmark" section of ``docs/alerts.md`` and prints one JSON line
last on stdout (progress goes to stderr).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository importable (the venv installs only the product).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    REPO,
    Collector,
    PrivateBroker,
    TemporaryDatabase,
    create_admin_key,
    log,
    machine_description,
    percentile,
    replace_doc_section,
    temporary_workdir,
)
from shared import protocol as p

LOAD_RPS = 10_000
DEVICES = 50
SENSORS_PER_DEVICE = 20
TICK_S = 0.1
WARMUP_S = 10.0
PROBES = 150
PROBE_GAP_S = 0.4
GOAL_P99_MS = 1000.0
PROBE_DEVICE = "bench-probe"
DOC = REPO / "docs" / "alerts.md"


def _load(port: int, stop: Any, sent: Any) -> None:
    """Background fleet: every tick, a batch from a share of the devices, paced to LOAD_RPS."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    per_tick = int(LOAD_RPS * TICK_S)
    readings_per_batch = SENSORS_PER_DEVICE * 10
    batches_per_tick = max(1, per_tick // readings_per_batch)
    seq, device, started = 0, 0, time.monotonic()
    tick = 0
    while not stop.is_set():
        now = time.time()
        t0 = int(now) - 1
        base_ms = int((now - t0) * 1000) - 900
        for _ in range(batches_per_tick):
            device_id = f"bench-{device % DEVICES:03d}"
            device += 1
            seq += 1
            readings = [
                (f"s{s:02d}", base_ms + i * 100, 4.0 + (s % 5) * 0.25 + (i % 3) * 0.0625, 0)
                for s in range(SENSORS_PER_DEVICE)
                for i in range(10)
            ]
            client.publish(
                p.topic(device_id, p.T_READINGS),
                p.encode_batch(device_id, seq, "bench", t0, readings),
                qos=1,
            )
            sent.value += len(readings)
        tick += 1
        time.sleep(max(0.0, started + tick * TICK_S - time.monotonic()))
    client.disconnect()
    client.loop_stop()


class Stream:
    """The collector's SSE stream read on a thread; hands each probe alert to the waiter."""

    def __init__(self, url: str, key: str) -> None:
        self.firing: dict[int, float] = {}  # probe value * 10 -> arrival (monotonic)
        self.seen = threading.Condition()
        self.ready = threading.Event()
        self.client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(10, read=None),
        )
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the collector stops at the end of the run
            self._read()

    def _read(self) -> None:
        with self.client.stream("GET", "/api/v1/alerts/stream") as resp:
            self.ready.set()
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("device_id") == PROBE_DEVICE and event.get("event") == "firing":
                    with self.seen:
                        self.firing[round(event["value"] * 10)] = time.monotonic()
                        self.seen.notify_all()

    def wait(self, key: int, timeout_s: float) -> float | None:
        with self.seen:
            self.seen.wait_for(lambda: key in self.firing, timeout_s)
            return self.firing.get(key)


def evaluated(collector: Collector) -> float:
    return collector.metrics().get(("thermowatch_alert_samples_evaluated_total", ()), 0.0)


def setup(database_url: str) -> None:
    """Devices registered as provisioning does, a default rule that every background reading
    is evaluated against, and the probe's own rule."""
    with psycopg.connect(database_url) as conn:
        ids = [f"bench-{d:03d}" for d in range(DEVICES)] + [PROBE_DEVICE]
        conn.execute(
            "INSERT INTO devices (device_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (ids,),
        )
        conn.execute(
            "INSERT INTO alert_rules (name, kind, params) VALUES ('too hot', 'threshold', "
            """'{"above_c": 80, "hysteresis_c": 1, "for_s": 60, "flap_window_s": 0}')"""
        )
        conn.execute(
            "INSERT INTO alert_rules (name, kind, device_id, params) VALUES ('too hot', "
            """'threshold', %s, '{"above_c": 50, "hysteresis_c": 1, "for_s": 0, """
            """"flap_window_s": 0}')""",
            (PROBE_DEVICE,),
        )


def probe(client: mqtt.Client, stream: Stream, n: int, value: float) -> float | None:
    """Publish one reading of ``value`` and return ms until its firing event arrived."""
    now = time.time()
    t0 = int(now)
    payload = p.encode_batch(
        PROBE_DEVICE, n, "probe", t0, [("p1", int((now - t0) * 1000), value, 0)]
    )
    started = time.monotonic()
    client.publish(p.topic(PROBE_DEVICE, p.T_READINGS), payload, qos=1)
    arrived = stream.wait(round(value * 10), 10.0)
    return None if arrived is None else (arrived - started) * 1000


def main() -> int:
    with (
        temporary_workdir("tw-bench-alerts-") as tmp,
        TemporaryDatabase() as db,
        PrivateBroker(Path(tmp)) as broker,
        Collector(
            db.url,
            broker.port,
            Path(tmp),
            auto_register_devices=False,
            secret_key=secrets.token_urlsafe(48),
            alerts_rule_cache_s=1.0,
        ) as collector,
    ):
        machine = machine_description(db.url)
        setup(db.url)
        stream = Stream(collector.url, create_admin_key(collector.env))
        ctx = mp.get_context("spawn")
        stop, sent = ctx.Event(), ctx.Value("q", 0)
        loader = ctx.Process(target=_load, args=(broker.port, stop, sent), daemon=True)
        loader.start()
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            log(f"background load {LOAD_RPS:,} readings/s; warming up {WARMUP_S:.0f} s")
            time.sleep(WARMUP_S)
            stored_before, load_started = collector.stored("mqtt"), time.monotonic()
            evaluated_before = evaluated(collector)
            latencies: list[float] = []
            missed = 0
            for n in range(PROBES):
                # Alternate crossing and normal values; each crossing is a new alert.
                value = 60.0 + (n % 500) / 10
                ms = probe(client, stream, 2 * n + 1, value)
                if ms is None:
                    missed += 1
                else:
                    latencies.append(ms)
                now = time.time()
                payload = p.encode_batch(
                    PROBE_DEVICE,
                    2 * n + 2,
                    "probe",
                    int(now),
                    [("p1", int((now - int(now)) * 1000), 20.0, 0)],
                )
                client.publish(p.topic(PROBE_DEVICE, p.T_READINGS), payload, qos=1)
                time.sleep(PROBE_GAP_S)
            elapsed = time.monotonic() - load_started
            stored_rps = (collector.stored("mqtt") - stored_before) / elapsed
            evaluated_rps = (evaluated(collector) - evaluated_before) / elapsed
        finally:
            stop.set()
            loader.join(10)
            client.loop_stop()
        log(f"{len(latencies)} probes, {missed} missed; stored {stored_rps:,.0f} readings/s")

    result = {
        "benchmark": "alerts",
        "alert_p50_ms": round(percentile(latencies, 50), 1),
        "alert_p99_ms": round(percentile(latencies, 99), 1),
        "alert_max_ms": round(max(latencies), 1),
        "probes": len(latencies),
        "missed": missed,
        "background_readings_per_s": round(stored_rps),
        "readings_evaluated_per_s": round(evaluated_rps),
        "goal_p99_ms": GOAL_P99_MS,
        "goal_met": bool(percentile(latencies, 99) < GOAL_P99_MS and missed == 0),
    }
    write_doc(result, machine)
    print(json.dumps(result), flush=True)
    return 0


def write_doc(result: dict[str, Any], machine: dict[str, str]) -> None:
    lines = [
        "Measured by `python bench/alerts.py` (it rewrites this section):",
        "",
        "| measure | value |",
        "|---|---|",
        f"| reading published → alert on the SSE stream, p50 | {result['alert_p50_ms']} ms |",
        f"| p99 (goal < {GOAL_P99_MS:.0f} ms) | {result['alert_p99_ms']} ms |",
        f"| max | {result['alert_max_ms']} ms |",
        f"| probes (missed) | {result['probes']} ({result['missed']}) |",
        f"| background load stored | {result['background_readings_per_s']:,} readings/s |",
        f"| readings evaluated by rules | {result['readings_evaluated_per_s']:,} /s |",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items()),
    ]
    replace_doc_section("benchmark", "\n".join(lines), path=DOC)


if __name__ == "__main__":
    sys.exit(main())
