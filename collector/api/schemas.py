"""Response and request models of the API (they are also its OpenAPI documentation)."""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from collector.auth.principal import Role


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


class DeviceStatus(StrEnum):
    active = "active"
    decommissioned = "decommissioned"


class DeviceOut(BaseModel):
    device_id: str
    name: str | None
    home_id: int | None
    status: DeviceStatus
    created_at: datetime
    last_seen: datetime | None
    last_boot_id: str | None
    last_seq: int | None


# -- people, homes and devices -------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid")


def _storable(text: str) -> str:
    """PostgreSQL text holds no NUL and only valid UTF-8 (JSON may carry lone surrogates)."""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return text


Storable = AfterValidator(_storable)


def _storable_json(value: Any) -> Any:
    """The same for JSON stored in ``jsonb``: every key and string inside, at any depth, and
    numbers (JSON has no NaN or Infinity, which a lenient parser lets through)."""
    if isinstance(value, str):
        _storable(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key)
            _storable_json(item)
    elif isinstance(value, list):
        for item in value:
            _storable_json(item)
    return value


StorableJson = AfterValidator(_storable_json)

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_safe(value: Any) -> Any:
    """``value`` with what JSON text cannot hold replaced, for echoing input back in an error:
    lone surrogates become U+FFFD, NaN and Infinity their names as strings."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


# Times clients send (query windows, backtests): anything the API computes from them (a day
# before, a bucket after, the time zone applied) stays within what Python and PostgreSQL hold.
EARLIEST_YEAR, LATEST_YEAR = 1900, 9000


def _api_time(value: datetime) -> datetime:
    if not EARLIEST_YEAR <= value.year < LATEST_YEAR:
        raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


ApiTime = Annotated[datetime, AfterValidator(_api_time)]
# Free text and ids that go into the database as they are.
StoredText = Annotated[str, Storable]
DeviceIdText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="1-64 of A-Z a-z 0-9 _ - . :",
    ),
]
UserName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@+-]+$")]
Password = Annotated[
    str, Field(min_length=12, max_length=1000, description="At least 12 characters"), Storable
]
Label = Annotated[str, Field(min_length=1, max_length=200), Storable]
MAX_ROW_ID = 2**62
HomeId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class LoginRequest(BaseModel):
    model_config = _STRICT
    username: Annotated[str, Field(min_length=1, max_length=200), Storable]
    password: Annotated[str, Field(min_length=1, max_length=1000), Storable]


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")


class UserOut(BaseModel):
    user_id: int
    username: str
    role: Role
    disabled: bool
    home_ids: list[int]
    created_at: datetime


class UserCreate(BaseModel):
    model_config = _STRICT
    username: UserName
    password: Password
    role: Role
    home_ids: list[HomeId] = Field(default_factory=list, max_length=1000)


class UserUpdate(BaseModel):
    """Admin changes to a user; fields left out stay as they are."""

    model_config = _STRICT
    password: Password | None = None
    role: Role | None = None
    disabled: bool | None = None
    home_ids: list[HomeId] | None = Field(default=None, max_length=1000)


class SelfUpdate(BaseModel):
    """What people may change about themselves: only their password. Any other field (``role``,
    ``home_ids``...) is refused with 422: no mass assignment."""

    model_config = _STRICT
    current_password: Annotated[str, Field(min_length=1, max_length=1000), Storable]
    new_password: Password


class ApiKeyCreate(BaseModel):
    model_config = _STRICT
    name: Label


class ApiKeyOut(BaseModel):
    key_id: int
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it")
    created_at: datetime
    last_used: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown only in this response")


class HomeIn(BaseModel):
    model_config = _STRICT
    name: Label


class HomeOut(BaseModel):
    home_id: int
    name: str
    created_at: datetime
    device_ids: list[str]


class SensorSpec(BaseModel):
    model_config = _STRICT
    sensor_id: DeviceIdText
    label: Label | None = Field(default=None, description='What it measures, e.g. "Freezer"')
    rom_address: Annotated[str, Field(max_length=64), Storable] | None = Field(
        default=None, description="The probe's 1-Wire ROM address, e.g. 28-0316a279d1ff"
    )


class SensorConfig(BaseModel):
    """Settings pushed to one sensor (same fields as the edge agent's pushed config)."""

    model_config = _STRICT
    sample_period_s: float | None = Field(default=None, gt=0, le=86400)
    high_c: float | None = Field(default=None, ge=-200, le=1000)
    low_c: float | None = Field(default=None, ge=-200, le=1000)
    hysteresis_c: float | None = Field(default=None, ge=0, le=100)
    min_duration_s: float | None = Field(default=None, ge=0, le=86400)


class DeviceConfig(BaseModel):
    """Config sent to the device, retained, on ``tw/v1/<device>/config``."""

    model_config = _STRICT
    v: Literal[1] = 1
    sample_period_s: float | None = Field(default=None, gt=0, le=86400)
    sensors: dict[DeviceIdText, SensorConfig] = Field(default_factory=dict, max_length=256)


class DeviceCreate(BaseModel):
    model_config = _STRICT
    device_id: DeviceIdText
    name: Label | None = None
    home_id: HomeId | None = None
    sensors: list[SensorSpec] = Field(default_factory=list, max_length=256)
    config: DeviceConfig = Field(default_factory=DeviceConfig)


class DeviceUpdate(BaseModel):
    """Admin changes; send ``home_id: null`` to take a device out of its home."""

    model_config = _STRICT
    name: Label | None = None
    home_id: HomeId | None = None


class MqttEndpoint(BaseModel):
    host: str
    port: int
    username: str
    password: str
    # With TLS, the PEM of the CA the device must trust for the broker (and nothing else).
    tls: bool = False
    ca: str | None = None


class TokenEndpoint(BaseModel):
    url: str
    token: str


class BundleSensor(BaseModel):
    sensor_id: str
    label: str | None
    rom_address: str | None = Field(default=None, description="1-Wire ROM address, if known")


class ProvisioningBundle(BaseModel):
    """Everything a board or gateway needs, shown once: ``thermowatch firmware flash`` and
    ``thermowatch edge`` read this JSON as it is."""

    device_id: str
    mqtt: MqttEndpoint
    coap: TokenEndpoint
    http: TokenEndpoint
    sensors: list[BundleSensor]
    config: DeviceConfig


class DeviceReport(BaseModel):
    """What the device last said about itself in its retained MQTT status."""

    online: bool | None = Field(description="From the status and the MQTT last will")
    spool: int | None = Field(default=None, description="Readings waiting in its spool")
    dropped: int | None = Field(
        default=None, description="Readings its spool dropped (drop-oldest policy), in all"
    )
    clock_synced: bool | None = None
    boot: str | None = None
    fw: str | None = None
    reported_at: datetime | None = None


class DeviceHealth(BaseModel):
    device_id: str
    status: DeviceStatus
    last_seen: datetime | None
    sensors: list[SensorLatest]
    rejects_24h: int = Field(description="Records refused from this device in the last 24 h")
    report: DeviceReport | None = Field(
        default=None, description="None until the device has published a status"
    )


class AuditEntry(BaseModel):
    audit_id: int
    time: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]


class ErrorOut(BaseModel):
    """What every refusal carries (422 validation errors list the fields instead)."""

    detail: str | list[dict[str, Any]]
