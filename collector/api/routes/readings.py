"""Readings: raw and downsampled series, and the latest value of each sensor.

Downsampling uses the continuous aggregates where the Timescale-licensed edition provides them
and ``time_bucket`` over raw readings otherwise; both give the same answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import Connection, text

from collector.api.deps import Caps, DbConn, DevicePath, SensorPath
from collector.api.schemas import (
    Agg,
    ApiTime,
    Bucket,
    BucketReading,
    RawReading,
    ReadingsPage,
    SensorLatest,
    StoredText,
)
from collector.db.capabilities import Capabilities

router = APIRouter(prefix="/api/v1/devices", tags=["readings"])

_WIDTH = {Bucket.m1: "1 minute", Bucket.m5: "5 minutes", Bucket.h1: "1 hour", Bucket.d1: "1 day"}
_RAW_AGG = {
    Agg.avg: "avg(value)",
    Agg.min: "min(value)",
    Agg.max: "max(value)",
    Agg.last: "last(value, time) FILTER (WHERE value IS NOT NULL)",
}
# Re-aggregating the continuous aggregates' columns into wider buckets.
_CAGG_AGG = {
    Agg.avg: "sum(avg * n) / nullif(sum(n), 0)",
    Agg.min: "min(min)",
    Agg.max: "max(max)",
    Agg.last: "last(last, bucket) FILTER (WHERE last IS NOT NULL)",
}
MAX_ROWS = 100_000


def _device_exists(db: DbConn, device_id: str) -> None:
    if db.execute(text("SELECT 1 FROM devices WHERE device_id = :d"), {"d": device_id}).first():
        return
    raise HTTPException(status_code=404, detail="device not found")


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=1)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    if start >= end:
        raise HTTPException(status_code=422, detail="start must be before end")
    return start, end


def bucket_query(caps: Capabilities, bucket: Bucket, agg: Agg, with_sensor: bool) -> str:
    sensor = "AND sensor_id = :sensor_id" if with_sensor else ""
    if caps.continuous_aggregates:
        view = "readings_1h" if bucket in (Bucket.h1, Bucket.d1) else "readings_1m"
        return f"""
            SELECT time_bucket(CAST(:width AS interval), bucket) AS b, sensor_id,
                   {_CAGG_AGG[agg]} AS value, sum(n) AS count, sum(faults) AS faults
            FROM {view}
            WHERE device_id = :device_id AND bucket >= :start AND bucket < :end {sensor}
            GROUP BY b, sensor_id ORDER BY sensor_id, b LIMIT :limit
        """
    return f"""
        SELECT time_bucket(CAST(:width AS interval), time) AS b, sensor_id,
               {_RAW_AGG[agg]} AS value, count(value) AS count,
               count(*) - count(value) AS faults
        FROM readings
        WHERE device_id = :device_id AND time >= :start AND time < :end {sensor}
        GROUP BY b, sensor_id ORDER BY sensor_id, b LIMIT :limit
    """


def _readings(
    db: DbConn,
    caps: Capabilities,
    device_id: str,
    sensor_id: str | None,
    start: datetime | None,
    end: datetime | None,
    bucket: Bucket | None,
    agg: Agg,
    limit: int,
) -> ReadingsPage:
    _device_exists(db, device_id)
    start, end = _window(start, end)
    params: dict[str, Any] = {
        "device_id": device_id,
        "sensor_id": sensor_id,
        "start": start,
        "end": end,
        "limit": limit + 1,
    }
    if bucket is None:
        sensor = "AND sensor_id = :sensor_id" if sensor_id else ""
        rows = db.execute(
            text(
                "SELECT time, sensor_id, value, quality, fault FROM readings "
                f"WHERE device_id = :device_id AND time >= :start AND time < :end {sensor} "
                "ORDER BY sensor_id, time LIMIT :limit"
            ),
            params,
        ).all()
        raw = [
            RawReading(time=r[0], sensor_id=r[1], value=r[2], quality=r[3], fault=r[4])
            for r in rows[:limit]
        ]
        return ReadingsPage(
            device_id=device_id, start=start, end=end, readings=raw, truncated=len(rows) > limit
        )
    params["width"] = _WIDTH[bucket]
    rows = db.execute(text(bucket_query(caps, bucket, agg, bool(sensor_id))), params).all()
    buckets = [
        BucketReading(time=r[0], sensor_id=r[1], value=r[2], count=r[3], faults=r[4])
        for r in rows[:limit]
    ]
    return ReadingsPage(
        device_id=device_id,
        start=start,
        end=end,
        bucket=bucket,
        agg=agg,
        readings=buckets,
        truncated=len(rows) > limit,
    )


Start = Annotated[ApiTime | None, Query(description="Inclusive, ISO 8601; default end - 24 h")]
End = Annotated[ApiTime | None, Query(description="Exclusive, ISO 8601; default now")]
BucketQ = Annotated[Bucket | None, Query(description="Downsample to this bucket width")]
AggQ = Annotated[Agg, Query(description="Aggregate per bucket (with `bucket`)")]
Limit = Annotated[int, Query(ge=1, le=MAX_ROWS)]


@router.get(
    "/{device_id}/readings",
    response_model=ReadingsPage,
    summary="Readings of all sensors of a device, raw or downsampled",
)
def device_readings(
    device_id: DevicePath,
    db: DbConn,
    caps: Caps,
    start: Start = None,
    end: End = None,
    bucket: BucketQ = None,
    agg: AggQ = Agg.avg,
    sensor_id: Annotated[StoredText | None, Query(description="Only this sensor")] = None,
    limit: Limit = 10_000,
) -> ReadingsPage:
    return _readings(db, caps, device_id, sensor_id, start, end, bucket, agg, limit)


@router.get(
    "/{device_id}/sensors/{sensor_id}/readings",
    response_model=ReadingsPage,
    summary="Readings of one sensor, raw or downsampled",
)
def sensor_readings(
    device_id: DevicePath,
    sensor_id: SensorPath,
    db: DbConn,
    caps: Caps,
    start: Start = None,
    end: End = None,
    bucket: BucketQ = None,
    agg: AggQ = Agg.avg,
    limit: Limit = 10_000,
) -> ReadingsPage:
    return _readings(db, caps, device_id, sensor_id, start, end, bucket, agg, limit)


@router.get(
    "/{device_id}/latest",
    response_model=list[SensorLatest],
    summary="Latest value of each sensor, by measurement time",
)
def latest(device_id: DevicePath, db: DbConn) -> list[SensorLatest]:
    _device_exists(db, device_id)
    return sensors_latest(db, device_id)


def sensors_latest(db: Connection, device_id: str) -> list[SensorLatest]:
    """Each sensor of a device with its latest valid value (by measurement time) and fault."""
    rows = db.execute(
        text(
            "SELECT sensor_id, label, last_time, last_value, last_seen, last_fault, "
            "last_fault_time FROM sensors WHERE device_id = :d ORDER BY sensor_id"
        ),
        {"d": device_id},
    ).all()
    return [
        SensorLatest(
            sensor_id=r[0],
            label=r[1],
            time=r[2],
            value=r[3],
            last_seen=r[4],
            last_fault=r[5],
            last_fault_time=r[6],
        )
        for r in rows
    ]
