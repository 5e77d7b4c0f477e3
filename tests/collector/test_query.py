"""The query API: raw and downsampled series, latest by measurement time, device last-seen."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from shared.protocol import encode_batch
from tests.collector.conftest import query
from tests.support.processes import CollectorProcess

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, so day buckets are aligned


def seed(url: str, device: str, sensor: str, values: list[float | None], step_s: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO devices (device_id) VALUES (%s) ON CONFLICT DO NOTHING", (device,)
        )
        with conn.cursor().copy(
            "COPY readings (time, device_id, sensor_id, value, quality, fault) FROM STDIN"
        ) as copy:
            for i, v in enumerate(values):
                fault = "crc" if v is None else None
                copy.write_row(
                    (
                        START + timedelta(seconds=i * step_s),
                        device,
                        sensor,
                        v,
                        1 if v is None else 0,
                        fault,
                    )
                )


def test_raw_readings_in_a_window(api: httpx.Client, fresh_database_url: str) -> None:
    seed(fresh_database_url, "q1", "s1", [20.0, 21.0, None, 23.0], 60)
    page = api.get(
        "/api/v1/devices/q1/readings",
        params={"start": START.isoformat(), "end": (START + timedelta(minutes=3)).isoformat()},
    ).json()
    assert [(r["value"], r["quality"], r["fault"]) for r in page["readings"]] == [
        (20.0, 0, None),
        (21.0, 0, None),
        (None, 1, "crc"),
    ]
    assert page["truncated"] is False
    limited = api.get(
        "/api/v1/devices/q1/sensors/s1/readings",
        params={
            "start": START.isoformat(),
            "end": (START + timedelta(hours=1)).isoformat(),
            "limit": 2,
        },
    ).json()
    assert len(limited["readings"]) == 2 and limited["truncated"] is True


def test_downsampled_buckets_match_a_direct_computation(
    api: httpx.Client, fresh_database_url: str
) -> None:
    # Three days of one reading a minute with a fault every 97th minute.
    values: list[float | None] = [
        None if i % 97 == 0 else round(15 + 5 * ((i * 7919) % 1000) / 1000, 4)
        for i in range(3 * 1440)
    ]
    seed(fresh_database_url, "q2", "s1", values, 60)
    expected: dict[str, dict[datetime, list[float | None]]] = {}
    for bucket, width in (("5m", 300), ("1h", 3600), ("1d", 86400)):
        groups: dict[datetime, list[float | None]] = defaultdict(list)
        for i, v in enumerate(values):
            groups[START + timedelta(seconds=(i * 60 // width) * width)].append(v)
        expected[bucket] = groups
    for bucket, groups in expected.items():
        for agg in ("avg", "min", "max", "last"):
            page = api.get(
                "/api/v1/devices/q2/sensors/s1/readings",
                params={
                    "start": START.isoformat(),
                    "end": (START + timedelta(days=3)).isoformat(),
                    "bucket": bucket,
                    "agg": agg,
                    "limit": 10000,
                },
            ).json()
            got = {datetime.fromisoformat(r["time"]): r for r in page["readings"]}
            assert set(got) == set(groups), (bucket, agg)
            for t, vs in groups.items():
                valid = [v for v in vs if v is not None]
                want = {
                    "avg": statistics.fmean(valid),
                    "min": min(valid),
                    "max": max(valid),
                    "last": valid[-1],
                }[agg]
                assert abs(got[t]["value"] - want) < 1e-9, (bucket, agg, t)
                assert got[t]["count"] == len(valid)
                assert got[t]["faults"] == len(vs) - len(valid)


def test_latest_is_by_measurement_time_not_arrival(
    collector: CollectorProcess, api: httpx.Client, fresh_database_url: str
) -> None:
    now = int(time.time())
    new = encode_batch("late1", 1, "b", now - 10, [("s1", 0, 5.0, 0)])
    backfill = encode_batch(
        "late1", 2, "b", now - 3600, [("s1", 0, 99.0, 0), ("s1", 1000, 98.0, 0)]
    )
    for body in (new, backfill):  # the older readings arrive last
        # A device (no user credentials; the test collector lets devices register themselves).
        assert httpx.post(collector.url + "/api/v1/ingest", content=body).status_code == 200
    latest = api.get("/api/v1/devices/late1/latest").json()
    assert [(s["sensor_id"], s["value"]) for s in latest] == [("s1", 5.0)]
    assert datetime.fromisoformat(latest[0]["time"]).timestamp() == now - 10
    device = api.get("/api/v1/devices/late1").json()
    assert device["last_seq"] == 2
    seen = datetime.fromisoformat(device["last_seen"])
    assert abs(seen.timestamp() - time.time()) < 60
    assert query(fresh_database_url, "SELECT count(*) FROM readings") == [(3,)]


def test_unknown_device_and_bad_windows_are_clear_errors(
    collector: CollectorProcess, api: httpx.Client
) -> None:
    assert api.get("/api/v1/devices/nope/readings").status_code == 404
    assert api.get("/api/v1/devices/nope").status_code == 404
    httpx.post(
        collector.url + "/api/v1/ingest",
        content=encode_batch("w1", 1, "b", int(time.time()), [("s", 0, 1.0, 0)]),
    )
    bad = api.get(
        "/api/v1/devices/w1/readings",
        params={"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    )
    assert bad.status_code == 422
    assert api.get("/api/v1/devices/w1/readings", params={"bucket": "7m"}).status_code == 422
