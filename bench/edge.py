"""Edge agent benchmark: peak RSS, CPU share at 4 x 1 Hz and 8 x 10 Hz, per-reading cost.

Runs with no arguments in about three minutes against a private Mosquitto, the real collector
and a scratch TimescaleDB database (all started here), and prints one JSON line at the end::

    {"rss_mb": ..., "cpu_pct_4x1hz": ..., "cpu_pct_8x10hz": ..., "us_per_reading": ...}

CPU is the agent process's user+system time over the window from /proc (percent of one core);
RSS is the kernel's high-water mark (VmHWM) of the agent process. ``us_per_reading`` is the
in-process cost of validate -> detect -> spool -> batch/encode -> ack for one reading.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.config import DetectorConfig  # noqa: E402
from edge.detect import SensorDetectors  # noqa: E402
from edge.spool import KIND_READINGS, Spool  # noqa: E402
from edge.validate import validate  # noqa: E402
from tests.edge.agent_process import spool_snapshot, start_agent  # noqa: E402
from tests.support.broker import MosquittoBroker  # noqa: E402
from tests.support.database import create_database, drop_database  # noqa: E402
from tests.support.net import wait_for  # noqa: E402
from tests.support.processes import start_collector  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sensors(count: int) -> list[dict[str, object]]:
    return [
        {
            "type": "simulator",
            "id": f"sim-{i}",
            "seed": i,
            "base_c": 18.0 + i,
            "noise_c": 0.1,
            "detect": {"high_c": 30.0, "min_duration_s": 5, "ewma_alpha": 0.1},
        }
        for i in range(count)
    ]


def measure_agent(
    workdir: Path, broker_port: int, count: int, period_s: float, window_s: float
) -> tuple[float, float, int]:
    """(cpu %, peak RSS MB, readings spooled) of one agent run."""
    spool = workdir / f"spool-{count}x{period_s}.db"
    agent = start_agent(
        spool, broker_port, sensors=sensors(count), sample_period_s=period_s, status_interval_s=10
    )
    try:
        assert agent.proc is not None
        pid = agent.proc.pid
        wait_for(lambda: spool_snapshot(spool)["ever_added"] > 0, 30, what="agent sampling")
        time.sleep(3)  # start-up (imports, connect) is not steady state
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        added0 = spool_snapshot(spool)["ever_added"]
        time.sleep(window_s)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        added = spool_snapshot(spool)["ever_added"] - added0
        rss = peak_rss_mb(pid)
        if not agent.alive():
            raise RuntimeError(agent.log())
        return 100.0 * (cpu1 - cpu0) / (t1 - t0), rss, added
    finally:
        agent.stop()


def pipeline_cost(workdir: Path, n: int = 20_000) -> float:
    """Microseconds per reading through validate, detect, spool, batch encode and ack."""
    spool = Spool(workdir / "micro.db")
    detectors = {
        f"s{i}": SensorDetectors(
            f"s{i}", DetectorConfig.model_validate({"high_c": 30.0, "ewma_alpha": 0.1})
        )
        for i in range(8)
    }
    start_ms = 1_763_900_000_000
    t0 = time.perf_counter()
    chunk: list = []
    for k in range(n):
        sid = f"s{k % 8}"
        reading = validate(sid, start_ms + k * 13, 20.0 + (k % 7) / 16, None, (-55, 125), True)
        events = detectors[sid].update(reading)
        chunk.append(reading)
        if len(chunk) == 40:  # what 8 sensors at 10 Hz give in one 0.5 s commit
            spool.add(chunk, events)
            chunk = []
    spool.add(chunk)
    while (batch := spool.next_batch(KIND_READINGS, "bench", 500)) is not None:
        spool.encode("bench-gw", batch)
        spool.ack("bench", batch.seq, start_ms)
    elapsed = time.perf_counter() - t0
    spool.close()
    return 1e6 * elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=60.0, help="measuring window per load")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    broker = MosquittoBroker(workdir / "mosquitto").start()
    database_url = create_database("thermowatch_bench_edge")
    collector = start_collector(database_url, broker.port)
    try:
        cpu_4x1, rss_4x1, n_4x1 = measure_agent(workdir, broker.port, 4, 1.0, args.window_s)
        print(f"4 x 1 Hz: {cpu_4x1:.2f} % CPU, peak RSS {rss_4x1:.1f} MB, {n_4x1} readings")
        cpu_8x10, rss_8x10, n_8x10 = measure_agent(workdir, broker.port, 8, 0.1, args.window_s)
        print(f"8 x 10 Hz: {cpu_8x10:.2f} % CPU, peak RSS {rss_8x10:.1f} MB, {n_8x10} readings")
        us = pipeline_cost(workdir)
    finally:
        collector.stop()
        broker.stop()
        drop_database(database_url)
    result = {
        "rss_mb": round(max(rss_4x1, rss_8x10), 1),
        "cpu_pct_4x1hz": round(cpu_4x1, 2),
        "cpu_pct_8x10hz": round(cpu_8x10, 2),
        "us_per_reading": round(us, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
