"""Collector settings: one pydantic-settings class, read from ``THERMOWATCH_*`` variables."""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from collector.broker import identity
from shared import protocol


class Settings(BaseSettings):
    """Every collector setting, with units in the names and safe defaults."""

    model_config = SettingsConfigDict(env_prefix="THERMOWATCH_", env_file=None, extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/thermowatch"

    # MQTT ingest. Empty client id and group: derived from the secret key, so devices cannot
    # guess them (collector/broker/identity.py). The client id is stable across restarts of an
    # instance, so the broker keeps its persistent session (and its unacknowledged messages).
    # The presence and broker-admin connections use it with a suffix.
    mqtt_enabled: bool = True
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_client_id: str = ""
    mqtt_shared_group: str = ""
    # While this instance is down the broker keeps queueing its share of the shared
    # subscription. Long enough to ride out a reconnect or a restart; short, because until it
    # expires a dead instance keeps receiving its share. Messages in an expired session are
    # dropped by the broker; senders re-send what was not acknowledged (docs/protocol.md).
    mqtt_session_expiry_s: int = Field(default=120, ge=0)
    # MQTT v5 Receive Maximum: how many unacknowledged messages the broker may send us; the
    # intake between paho's network thread and the pipeline holds that many of the largest.
    mqtt_receive_maximum: int = Field(default=500, ge=1, le=65535)
    mqtt_keepalive_s: int = 30
    # The CA that signed the broker's certificate (``thermowatch collector tls-init``): set, the
    # collector's MQTT connections use TLS and verify the broker's certificate and name.
    mqtt_tls_ca_file: str | None = None

    # CoAP ingest (UDP).
    coap_enabled: bool = True
    coap_host: str = "127.0.0.1"
    coap_port: int = 5683
    # CoAP has no encryption here (no maintained DTLS or OSCORE that boards and aiocoap share):
    # a device's token and readings cross the network readable. So the CoAP listener starts
    # only when this explicit opt-in says that is accepted (docs/security.md).
    coap_plaintext_allowed: bool = False

    # HTTP API.
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Largest request body outside ingest (which has max_payload_bytes), enforced while reading
    # so that an unauthenticated request cannot make the collector hold a large body.
    http_max_body_bytes: int = 256 * 1024
    # Both set: the API is served over HTTPS by the collector itself (else terminate TLS at a
    # reverse proxy in front of it, docs/security.md).
    http_tls_cert_file: str | None = None
    http_tls_key_file: str | None = None

    # Group commit: a transaction holds up to this many readings, or whatever arrived within the
    # wait, whichever comes first.
    ingest_batch_max_readings: int = 50_000
    ingest_max_wait_ms: int = 50
    ingest_queue_max_readings: int = 500_000
    # Connections committing groups in parallel (each group is still one transaction).
    ingest_writer_threads: int = 2
    # /readyz reports not ready when a writer thread has held work this long without committing
    # any of it (the database blocks it, or is gone).
    ingest_writer_stall_s: float = Field(default=30.0, gt=0)
    max_payload_bytes: int = protocol.MAX_PAYLOAD_BYTES

    # Validation.
    min_valid_c: float = -60.0
    max_valid_c: float = 150.0
    max_future_skew_s: int = 300
    max_age_days: int = 400
    reject_raw_max_bytes: int = 4096
    # Devices must be registered before they may send; a development setting lets the first batch
    # register a device (never on in production: anyone could invent devices).
    auto_register_devices: bool = False

    # Authentication. The secret signs access tokens; it has no default (see docs/security.md).
    secret_key: SecretStr | None = None
    access_token_ttl_s: int = 900
    # Login throttling (collector/auth/throttle.py): after the free failures of a user name (or
    # of one address), each further failure asks for a pause, doubling up to the maximum; a
    # correct password after the pause always works, and from an address where the user logged
    # in before only that pair's own failures count. Counters forget after a quiet period.
    login_free_failures: int = Field(default=5, ge=1)
    login_address_free_failures: int = Field(default=20, ge=1)
    login_delay_base_s: float = Field(default=1.0, gt=0)
    login_delay_max_s: float = Field(default=60.0, gt=0)
    login_forget_s: float = Field(default=900.0, gt=0)
    login_known_address_days: float = Field(default=30.0, ge=0)
    # Password hashes (argon2, 64 MiB each) checked at once per instance, logins waiting for
    # one (at most the wait), and beyond that 503 with Retry-After.
    login_max_concurrent_hashes: int = Field(default=2, ge=1)
    login_hash_queue: int = Field(default=8, ge=0)
    login_hash_wait_s: float = Field(default=5.0, gt=0)
    # Reverse proxies whose X-Forwarded-For names the client (addresses or networks, comma
    # separated). Empty: the header is ignored and the peer is the client; never "*".
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How often an open alert stream checks that its session still runs (closes when not).
    stream_recheck_s: float = Field(default=15.0, gt=0)

    # Broker authentication and ACLs, generated from the database (empty: not managed here).
    # Devices' accounts go to the password file, read by the devices' listener (which has
    # use_username_as_clientid, so no device can connect under another's client id); the
    # collectors' account goes to a file of its own, read only by the collectors' listener.
    # Without the collectors' file both go to the one file (one listener, no binding).
    broker_password_file: str | None = None
    broker_collector_password_file: str | None = None
    broker_acl_file: str | None = None
    # How to make Mosquitto re-read them: SIGHUP to the pid in this file, or run this command.
    broker_pid_file: str | None = None
    broker_reload_command: str | None = None
    broker_sync_interval_s: float = 30.0
    # "files" writes the two files above; "dynsec" drives Mosquitto's dynamic-security plugin
    # over MQTT as its admin account, so the broker also refuses forbidden SUBSCRIBEs.
    broker_backend: Literal["files", "dynsec"] = "files"
    broker_admin_username: str | None = None
    broker_admin_password: SecretStr | None = None
    broker_command_timeout_s: float = 5.0

    # Endpoints written into provisioning bundles (defaults: the listening addresses).
    public_mqtt_host: str | None = None
    public_mqtt_port: int | None = None
    public_coap_url: str | None = None
    public_http_url: str | None = None
    # The CA devices must trust for the broker, put into bundles (its PEM text); set, bundles
    # tell devices to use TLS. Defaults to mqtt_tls_ca_file.
    public_mqtt_ca_file: str | None = None

    # Alerts. A reading measured longer ago than the live window is a backfill: evaluated and
    # recorded, but no "now" notification for a condition that already ended.
    alerts_enabled: bool = True
    alerts_live_window_s: float = 300.0
    alerts_sweep_interval_s: float = 5.0  # stale sensors, offline devices, repeats
    alerts_rule_cache_s: float = 2.0  # how soon an edited rule applies on every instance
    # Notifications: outbox polling, retries with exponential backoff.
    notify_poll_interval_s: float = 1.0
    notify_max_attempts: int = 10
    notify_backoff_base_s: float = 2.0
    notify_backoff_max_s: float = 600.0
    homeassistant_sync_interval_s: float = 30.0
    # Homeowners' targets must resolve to public addresses (no reaching into the collector's
    # network); set for installations that run on the same network as their users' brokers.
    notify_allow_private_targets: bool = False

    # Storage (TimescaleDB).
    chunk_interval_days: int = 1
    # Used only with the Timescale-licensed edition (compression, retention policies).
    compress_after_days: int = 7
    retention_days: int = 0  # 0 keeps raw readings forever

    # Alert quotas and fairness (docs/alerts.md): what one home may ask of alerting, so that it
    # cannot delay another home's alerts. The API refuses rules and targets past the per-home
    # counts (409), for admins too; defaults without a home are not counted.
    alerts_max_rules_per_home: int = Field(default=50, ge=0)
    alerts_max_targets_per_home: int = Field(default=10, ge=0)
    # Each evaluation round gives every home with waiting work this many rule evaluations
    # (samples x rules that apply to them, weighted; about 50 ms); the rest waits for the next.
    alerts_home_evaluations_per_round: int = Field(default=25_000, ge=1)
    # Committed samples waiting for evaluation; past this the heaviest home's oldest work is
    # shed (stored, not evaluated; thermowatch_alert_shed_total).
    alerts_backlog_max_samples: int = Field(default=100_000, ge=1)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: object) -> list[str]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError("a list of addresses or networks")
        # Each entry must parse as an address or network: a typo or "*" must not trust anyone.
        names = [str(item).strip() for item in items]
        return [str(ipaddress.ip_network(name, strict=False)) for name in names if name]

    @model_validator(mode="after")
    def _derive_broker_names(self) -> Settings:
        secret = self.secret_key.get_secret_value() if self.secret_key else None
        if not self.mqtt_client_id:
            self.mqtt_client_id = identity.collector_client_id(
                secret, socket.gethostname(), self.http_port
            )
        if not self.mqtt_shared_group:
            self.mqtt_shared_group = identity.collector_shared_group(secret, protocol.SHARED_GROUP)
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
