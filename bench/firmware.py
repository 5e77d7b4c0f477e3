"""Firmware benchmark: heap and time of the board's steady-state loop, measured with ``gc`` inside
the real MicroPython unix port under a 64 KB heap (``-X heapsize=64k``).

Run with no arguments (``python bench/firmware.py``). It builds the firmware for the unix port,
starts a private Mosquitto, a TimescaleDB database and the real collector, and runs the board with
two simulated probes, the threshold and EWMA detectors, the RAM ring, the flash spool and MQTT
with collector acks. One loop iteration is one pass of the main loop (``Board.step()``, 1 ms
apart): sample when due (every 50 ms, far more often than a real board), run the detectors, push
to the ring, flush to flash when due, take acks and send the next batch.

Printed last, one JSON line:

- ``loop_heap_bytes``: peak live heap of the loop beyond what was in use when it started
  (``gc.collect()`` + ``gc.mem_alloc()`` after each of 1,000 iterations);
- ``heap_in_use_bytes``: that peak including everything loaded (code, buffers, config);
- ``heap_growth_bytes``: live heap after 10,000 iterations minus before them;
- ``loop_ms``: mean time inside one iteration over those 10,000 (the sleeps between passes not
  counted);
- ``alloc_bytes_per_sampling_pass``: short-lived garbage of a pass that samples, detects and
  fills the ring (mean of 20, GC off during each, delivery left out).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import Collector, PrivateBroker, TemporaryDatabase, log
from thermowatch.firmware_cli import build_bundle

REPO = Path(__file__).resolve().parent.parent
HEAP = "64k"
DEVICE = "bench-board"
ITERATIONS = 10_000
HEAP_SAMPLES = 1_000

# Runs on the board (MicroPython): the steady-state loop, measured from inside.
LOOP = """
import gc, json, sys, time
from sensorboard import app

board = app.start("")

def cycle():
    board.step()

started = time.ticks_ms()
while board.acked == 0 and time.ticks_diff(time.ticks_ms(), started) < 30000:
    cycle()
    time.sleep_ms(2)
gc.collect()
base = gc.mem_alloc()
peak = base
for _ in range(HEAP_SAMPLES):
    cycle()
    gc.collect()
    used = gc.mem_alloc()
    if used > peak:
        peak = used
    time.sleep_ms(1)
gc.collect()
before = gc.mem_alloc()
busy_us = 0
for _ in range(ITERATIONS):
    t0 = time.ticks_us()
    cycle()
    busy_us += time.ticks_diff(time.ticks_us(), t0)
    time.sleep_ms(1)  # Board.run() sleeps 5-20 ms between passes
elapsed_us = busy_us
gc.collect()
after = gc.mem_alloc()
garbage = 0
link = board.transport
board.transport = None  # sampling only: sending allocates more than a 64 KB heap holds ungc'd
for _ in range(20):
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    board.next_sample = time.ticks_ms()
    cycle()
    garbage += gc.mem_alloc() - a0
    gc.enable()
board.transport = link
print("RESULT " + json.dumps({
    "base": base, "peak": peak, "before": before, "after": after,
    "elapsed_us": elapsed_us, "garbage_per_sample": garbage // 20,
    "samples": board.samples, "faults": board.faults, "events": board.events,
    "acked": board.acked, "dropped": board.spool.dropped, "free": gc.mem_free(),
    "transport_errors": board.transport.errors, "last_error": board.transport.last_error,
}))
"""


def board_config(broker_port: int) -> dict[str, object]:
    return {
        "device_id": DEVICE,
        "transport": "mqtt",
        "mqtt_host": "127.0.0.1",
        "mqtt_port": broker_port,
        "ntp_host": "",
        "sample_period_s": 0.05,
        "ring_records": 32,
        "flush_records": 16,
        "flush_interval_s": 1,
        "batch_records": 20,
        "ack_timeout_s": 2,
        "segment_records": 512,
        "max_segments": 64,
        "sensors": [
            {"id": "t1", "kind": "sim", "base_c": 20.0, "period_samples": 600},
            {"id": "t2", "kind": "sim", "script": [4.5, 4.5625, 4.625, 85.0, 4.5625]},
        ],
        "detectors": {
            "threshold": {"high_c": 21.5, "min_duration_s": 0},
            "ewma": {"alpha": 0.1, "z_limit": 4.0},
        },
    }


def micropython() -> str:
    return os.environ.get(
        "THERMOWATCH_MICROPYTHON", str(REPO / ".cache" / "micropython" / "micropython")
    )


def mpy_cross() -> str:
    return os.environ.get(
        "THERMOWATCH_MPY_CROSS", str(REPO / ".cache" / "micropython" / "mpy-cross")
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tw-bench-fw-") as tmp:
        work = Path(tmp)
        log("building the firmware for the unix port")
        build = build_bundle("unix", work / "dist")
        root = work / "board"
        subprocess.run(["cp", "-r", str(build), str(root)], check=True)
        script = LOOP.replace("HEAP_SAMPLES", str(HEAP_SAMPLES)).replace(
            "ITERATIONS", str(ITERATIONS)
        )
        with (
            PrivateBroker(work) as broker,
            TemporaryDatabase() as db,
            Collector(db.url, broker.port, work, auto_register_devices=True),
        ):
            (root / "config.json").write_text(json.dumps(board_config(broker.port)))
            log(f"running {ITERATIONS} loop iterations under a {HEAP} heap")
            # Compiled like the firmware, so that compiling it does not eat the board's heap.
            (work / "bench_loop.py").write_text(script)
            subprocess.run(
                [mpy_cross(), "-o", str(root / "bench_loop.mpy"), str(work / "bench_loop.py")],
                check=True,
            )
            env = dict(os.environ, MICROPYPATH=f"{root}:{root / 'lib'}:.frozen")
            proc = subprocess.run(
                [micropython(), "-X", f"heapsize={HEAP}", "-c", "import bench_loop"],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                sys.exit(f"the board failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            board = json.loads(lines[-1][len("RESULT ") :])
            log(f"board: {board}")
            time.sleep(2)  # let the last acknowledged batch commit
            with psycopg.connect(db.url) as conn:
                stored = conn.execute(
                    "SELECT count(*) FROM readings WHERE device_id = %s", (DEVICE,)
                ).fetchone()
        result = {
            "loop_heap_bytes": board["peak"] - board["base"],
            "heap_growth_bytes": board["after"] - board["before"],
            "loop_ms": round(board["elapsed_us"] / ITERATIONS / 1000, 4),
            "heap_in_use_bytes": board["peak"],
            "heap_limit": HEAP,
            "alloc_bytes_per_sampling_pass": board["garbage_per_sample"],
            "iterations": ITERATIONS,
            "samples": board["samples"],
            "probe_faults": board["faults"],
            "detector_events": board["events"],
            "records_acked": board["acked"],
            "readings_stored": stored[0] if stored else 0,
            "records_dropped": board["dropped"],
            "micropython": "unix port, 64-bit",
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
