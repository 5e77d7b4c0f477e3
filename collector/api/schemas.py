"""Response and request models of the API (they are also its OpenAPI documentation)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Bucket(StrEnum):
    m1 = "1m"
    m5 = "5m"
    h1 = "1h"
    d1 = "1d"


class Agg(StrEnum):
    avg = "avg"
    min = "min"
    max = "max"
    last = "last"


class RawReading(BaseModel):
    time: datetime = Field(description="Measurement time (UTC)")
    sensor_id: str
    value: float | None = Field(description="°C; null for a probe fault")
    quality: int = Field(description="Bit mask: 1 probe fault, 2 clock unsynchronised")
    fault: str | None = Field(default=None, description="Probe fault reason")


class BucketReading(BaseModel):
    time: datetime = Field(description="Start of the bucket (UTC)")
    sensor_id: str
    value: float | None = Field(description="The aggregate in °C; null if only faults")
    count: int = Field(description="Valid readings in the bucket")
    faults: int = Field(description="Probe-fault readings in the bucket")


class ReadingsPage(BaseModel):
    device_id: str
    start: datetime
    end: datetime
    bucket: Bucket | None = None
    agg: Agg | None = None
    readings: list[RawReading] | list[BucketReading]
    truncated: bool = Field(default=False, description="More rows matched than `limit`")


class SensorLatest(BaseModel):
    sensor_id: str
    label: str | None
    time: datetime | None = Field(description="Measurement time of the latest valid reading")
    value: float | None
    last_seen: datetime | None = Field(description="When the latest reading arrived")
    last_fault: str | None
    last_fault_time: datetime | None


class DeviceOut(BaseModel):
    device_id: str
    name: str | None
    created_at: datetime
    last_seen: datetime | None
    last_boot_id: str | None
    last_seq: int | None
