"""Query benchmark: downsampled queries over a year of 1-minute data for one sensor.

Loads a year of one-minute readings for the measured sensor (plus four neighbours on the same
device, so the index holds more than the one series), then times the query the API runs for each
bucket width and aggregate (``collector.api.routes.readings.bucket_query``), with the raw scan of
the same year as the reference. Prints one JSON line; writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository importable (the venv installs only the product).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import TemporaryDatabase, log, machine_description, replace_doc_section
from collector.api.routes.readings import _WIDTH, MAX_ROWS, bucket_query
from collector.api.schemas import Agg, Bucket
from collector.config import Settings
from collector.db import migrate
from collector.db.capabilities import detect
from collector.db.connection import API_SESSION_OPTIONS

DEVICE = "bench-q"
SENSORS = 5
START = datetime(2025, 1, 1, tzinfo=UTC)
MINUTES = 365 * 1440
REPEATS = 5


def load(url: str) -> float:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO devices (device_id) VALUES (%s)", (DEVICE,))
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY readings (time, device_id, sensor_id, value, quality) FROM STDIN"
        ) as copy:
            for minute in range(MINUTES):
                t = START + timedelta(minutes=minute)
                for s in range(SENSORS):
                    copy.write_row((t, DEVICE, f"s{s}", 20.0 + (minute * 7 + s) % 100 / 10, 0))
        conn.commit()
        conn.execute("ANALYZE readings")
        return time.perf_counter() - started


def timed(conn: psycopg.Connection, sql: str, params: dict[str, object]) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(REPEATS):
        started = time.perf_counter()
        rows = len(conn.execute(sql, params).fetchall())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), rows


def main() -> None:
    with TemporaryDatabase("thermowatch_bench_query") as db:
        caps = migrate.upgrade(Settings(database_url=db.url))
        log(f"loading {MINUTES * SENSORS:,} readings (a year of 1-minute data, {SENSORS} sensors)")
        load_s = load(db.url)
        log(f"loaded in {load_s:.1f}s")
        results: dict[str, float] = {}
        rows_by_key: dict[str, int] = {}
        params: dict[str, object] = {
            "device_id": DEVICE,
            "sensor_id": "s0",
            "start": START,
            "end": START + timedelta(days=365),
            "limit": MAX_ROWS + 1,
        }
        # The session settings the API's connections use.
        with psycopg.connect(db.url, options=API_SESSION_OPTIONS) as conn:
            caps = detect(conn)
            # SQLAlchemy's :name parameters become psycopg's %(name)s.
            for bucket in (Bucket.h1, Bucket.d1):
                for agg in Agg:
                    sql = bucket_query(caps, bucket, agg, True)
                    for name in ("width", "device_id", "sensor_id", "start", "end", "limit"):
                        sql = sql.replace(f":{name}", f"%({name})s")
                    ms, n = timed(conn, sql, {**params, "width": _WIDTH[bucket]})
                    results[f"{bucket.value}_{agg.value}_ms"] = round(ms, 1)
                    rows_by_key[f"{bucket.value}_{agg.value}"] = n
                    log(f"bucket={bucket.value} agg={agg.value}: {ms:.1f} ms, {n} rows")
            raw_ms, raw_rows = timed(
                conn,
                "SELECT time, value FROM readings WHERE device_id = %(device_id)s AND "
                "sensor_id = %(sensor_id)s AND time >= %(start)s AND time < %(end)s",
                params,
            )
            log(f"raw year scan (reference): {raw_ms:.1f} ms, {raw_rows} rows")
        machine = machine_description(db.url)
    result = {
        "year_1d_avg_ms": results["1d_avg_ms"],
        "year_1h_avg_ms": results["1h_avg_ms"],
        "year_worst_ms": max(results.values()),
        "raw_year_scan_ms": round(raw_ms, 1),
        "rows_per_sensor": raw_rows,
        "continuous_aggregates": caps.continuous_aggregates,
    }
    table = "\n".join(
        f"| {k.rsplit('_', 2)[0]} | {k.rsplit('_', 2)[1]} | {v} | {rows_by_key[k[:-3]]} |"
        for k, v in results.items()
    )
    replace_doc_section(
        "query",
        f"""
## Queries over a year of data (`bench/query.py`)

A year of 1-minute readings for one sensor ({raw_rows:,} rows; {SENSORS} sensors on the device,
{MINUTES * SENSORS:,} rows in all). Median of {REPEATS} runs of the query the API runs, with
the API's session settings (JIT off: compiling took longer than running these queries).
Continuous aggregates: {
            "yes"
            if caps.continuous_aggregates
            else "no (Apache edition: `time_bucket` over raw readings)"
        }.

| bucket | agg | ms | buckets |
|--------|-----|----|---------|
{table}

Reference, the raw scan of the same year for the sensor: {raw_ms:.1f} ms.

Machine: {machine["cpu"]}; {machine["memory"]}; {machine["os"]}; PostgreSQL {machine["postgresql"]};
TimescaleDB {machine["timescaledb"]}.
""",
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
