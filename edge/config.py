"""Edge agent configuration: one pydantic-settings class, TOML file, provisioning bundle, env.

Precedence, highest first: ``THERMOWATCH_EDGE_*`` environment variables, the TOML file, the
provisioning bundle, defaults. Config pushed live by the collector is applied on top at run time
(see :class:`PushedConfig`) and persisted in the spool database, so it survives restarts.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared import protocol

DEFAULT_SPOOL_PATH = Path("/var/lib/thermowatch-edge/spool.sqlite3")
W1_DEVICES = "/sys/bus/w1/devices"
CPU_THERMAL_ZONE = "/sys/class/thermal/thermal_zone0"


class ConfigError(ValueError):
    """The configuration files or variables cannot be used; the message says which field."""


def _check_id(value: str) -> str:
    if not protocol.valid_id(value):
        raise ValueError(f"{value!r} is not a valid protocol id (1-64 of A-Z a-z 0-9 _ - . :)")
    return value


class DetectorConfig(BaseModel):
    """Thresholds and anomaly detection for one sensor; all optional."""

    model_config = ConfigDict(extra="forbid")

    high_c: float | None = None
    low_c: float | None = None
    hysteresis_c: float = Field(0.5, ge=0)
    min_duration_s: float = Field(0.0, ge=0)
    ewma_alpha: float | None = Field(None, gt=0, le=1)
    anomaly_z: float = Field(4.0, gt=0)


class _SensorBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    sample_period_s: float | None = Field(None, gt=0, le=86400)
    detect: DetectorConfig = DetectorConfig.model_validate({})

    _valid_id = field_validator("id")(_check_id)


class DS18B20Config(_SensorBase):
    """A DS18B20 probe read through the kernel's w1-therm driver; ``id`` is its ROM id."""

    type: Literal["ds18b20"] = "ds18b20"
    rom: str | None = None  # the probe's directory under w1_devices; defaults to the id
    w1_devices: str = W1_DEVICES
    crc_retries: int = Field(2, ge=0, le=10)


class CpuConfig(_SensorBase):
    """The SoC temperature from a kernel thermal zone."""

    type: Literal["cpu"] = "cpu"
    id: str = "cpu"
    thermal_zone: str = CPU_THERMAL_ZONE


class I2CConfig(_SensorBase):
    """An SHT3x or BME280 on an I2C bus (needs the optional ``smbus2`` package)."""

    type: Literal["sht3x", "bme280"]
    bus: int = Field(1, ge=0)
    address: int | None = Field(None, ge=0x03, le=0x77)


class SimulatorConfig(_SensorBase):
    """A simulated probe for demos and tests: diurnal cycle plus the faults real probes show."""

    type: Literal["simulator"] = "simulator"
    seed: int = 0
    base_c: float = 20.0
    diurnal_amplitude_c: float = 3.0
    diurnal_period_s: float = Field(86400.0, gt=0)
    noise_c: float = Field(0.05, ge=0)
    drift_c_per_h: float = 0.0
    step_c: float = 0.0
    step_every_s: float = Field(0.0, ge=0)
    spike_probability: float = Field(0.0, ge=0, le=1)
    spike_c: float = 15.0
    dropout_probability: float = Field(0.0, ge=0, le=1)
    stuck_probability: float = Field(0.0, ge=0, le=1)
    stuck_duration_s: float = Field(30.0, ge=0)
    power_on_reading: bool = False


SensorConfig = Annotated[
    DS18B20Config | CpuConfig | I2CConfig | SimulatorConfig, Field(discriminator="type")
]


class RelayConfig(BaseModel):
    """The local broker that MicroPython boards publish their batches to."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None


class EdgeSettings(BaseSettings):
    """Everything the agent needs, with units in the names and safe defaults."""

    model_config = SettingsConfigDict(
        env_prefix="THERMOWATCH_EDGE_", extra="forbid", validate_assignment=True
    )

    device_id: str
    sample_period_s: float = Field(10.0, gt=0, le=86400)
    sensors: list[SensorConfig] = Field(default_factory=list)
    relay: RelayConfig | None = None

    spool_path: Path = DEFAULT_SPOOL_PATH
    spool_max_readings: int = Field(2_000_000, ge=100)
    spool_max_age_s: float = Field(30 * 86400, gt=0)
    spool_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    spool_commit_interval_s: float = Field(0.5, gt=0, le=60)

    transport: Literal["mqtt", "coap"] = "mqtt"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_keepalive_s: int = Field(30, ge=5, le=3600)
    mqtt_tls: bool = False
    # The CA the broker's certificate must chain to: PEM text (as the provisioning bundle
    # carries it) or a file. Neither: the system's trust store.
    mqtt_ca: str | None = None
    mqtt_ca_file: Path | None = None
    coap_url: str | None = None
    coap_token: str | None = None
    http_url: str | None = None
    http_token: str | None = None

    batch_max_readings: int = Field(500, ge=1, le=protocol.MAX_READINGS_PER_BATCH)
    batch_max_age_s: float = Field(2.0, gt=0)
    max_inflight_batches: int = Field(4, ge=1, le=64)
    ack_timeout_s: float = Field(20.0, gt=0)
    backoff_min_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)

    shutdown_drain_s: float = Field(5.0, ge=0, le=300)  # keep forwarding this long on stop

    clock_synced: bool | None = None  # None: ask the kernel; set it only for tests or odd hosts
    status_interval_s: float = Field(10.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    _valid_device = field_validator("device_id")(_check_id)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # File values arrive as init arguments; the environment must still override them.
        return env_settings, init_settings

    def sensor_ids(self) -> list[str]:
        return [s.id for s in self.sensors]


def _bundle_sensor(entry: Any) -> dict[str, Any] | None:
    """A sensor config from a bundle entry: the collector lists ``{sensor_id, label,
    rom_address}``; which driver reads it follows from the ROM address or the id."""
    if not isinstance(entry, dict) or "type" in entry:
        return entry if isinstance(entry, dict) else None
    sensor_id = entry.get("sensor_id")
    if not isinstance(sensor_id, str):
        return None
    rom = entry.get("rom_address")
    if rom or sensor_id.startswith("28-"):
        return {"type": "ds18b20", "id": sensor_id, "rom": rom or sensor_id}
    if sensor_id == "cpu":
        return {"type": "cpu", "id": sensor_id}
    if sensor_id.startswith("sim-"):
        return {"type": "simulator", "id": sensor_id}
    return None  # an I2C probe needs its bus and address from the TOML file


def bundle_values(bundle: dict[str, Any]) -> dict[str, Any]:
    """Flatten a provisioning bundle (``mqtt: {host, ...}``, ``coap: {url, token}``, ...).
    Its ``config`` (thresholds, sample period) is applied like a pushed config."""
    values: dict[str, Any] = {}
    for key, value in bundle.items():
        if key in ("mqtt", "coap", "http") and isinstance(value, dict):
            for sub, sub_value in value.items():
                values[f"{key}_{sub}"] = sub_value
        elif key == "sensors" and isinstance(value, list):
            values["sensors"] = [x for x in map(_bundle_sensor, value) if x is not None]
        elif key != "config":
            values[key] = value
    return values


def load_settings(
    config_file: Path | None = None,
    bundle_file: Path | None = None,
    defaults: dict[str, Any] | None = None,
    **overrides: Any,
) -> EdgeSettings:
    """Settings from defaults, a bundle, a TOML file, overrides and (highest) the environment."""
    values: dict[str, Any] = dict(defaults or {})
    bundle_config: Any = None
    try:
        if bundle_file is not None:
            bundle = json.loads(bundle_file.read_text())
            if not isinstance(bundle, dict):
                raise ValueError("the bundle must be a JSON object")
            values.update(bundle_values(bundle))
            bundle_config = bundle.get("config")
        if config_file is not None:
            values.update(tomllib.loads(config_file.read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration: {exc}") from None
    values.update(overrides)
    try:
        settings = EdgeSettings(**values)
        if bundle_config:
            settings = apply_pushed(settings, PushedConfig.model_validate(bundle_config))
        return settings
    except ValidationError as exc:
        raise ConfigError(str(exc)) from None


class PushedSensorConfig(BaseModel):
    """What the collector may change live for one sensor."""

    model_config = ConfigDict(extra="ignore")

    sample_period_s: float | None = Field(None, gt=0, le=86400)
    high_c: float | None = None
    low_c: float | None = None
    hysteresis_c: float | None = Field(None, ge=0)
    min_duration_s: float | None = Field(None, ge=0)


class PushedConfig(BaseModel):
    """Config pushed by the collector on ``tw/v1/<device>/config`` (retained)."""

    model_config = ConfigDict(extra="ignore")

    v: Literal[1] = 1
    sample_period_s: float | None = Field(None, gt=0, le=86400)
    sensors: dict[str, PushedSensorConfig] = Field(default_factory=dict)


def apply_pushed(settings: EdgeSettings, pushed: PushedConfig) -> EdgeSettings:
    """A copy of ``settings`` with the pushed values applied (unknown sensors are ignored)."""
    data = settings.model_dump()
    if pushed.sample_period_s is not None:
        data["sample_period_s"] = pushed.sample_period_s
    for sensor in data["sensors"]:
        change = pushed.sensors.get(sensor["id"])
        if change is None:
            continue
        if change.sample_period_s is not None:
            sensor["sample_period_s"] = change.sample_period_s
        for key in ("high_c", "low_c", "hysteresis_c", "min_duration_s"):
            value = getattr(change, key)
            if value is not None:
                sensor["detect"][key] = value
    return EdgeSettings.model_validate(data)
