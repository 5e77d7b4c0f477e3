"""The firmware on the real MicroPython unix port (64 KB heap, simulated probes) delivering through
the real collector into TimescaleDB: exactly once over MQTT and CoAP, across a SIGKILL reboot and
across a broker outage longer than the RAM buffer."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import psycopg

from tests.firmware.board import UnixBoard
from tests.firmware.conftest import DEVICE, board_config
from tests.support.broker import MosquittoBroker
from tests.support.net import wait_for
from tests.support.processes import CollectorProcess, start_collector


def rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT sensor_id, time, value, quality, fault FROM readings WHERE device_id = %s",
            (DEVICE,),
        ).fetchall()


def acked_stored(log: str) -> int:
    """Readings the collector said it stored, summed over the acks the board logged."""
    return sum(int(line.split()[4]) for line in log.splitlines() if line.startswith("TW ack "))


def assert_exactly_once(stored: list[tuple[Any, ...]]) -> None:
    keys = [(r[0], r[1]) for r in stored]
    assert len(keys) == len(set(keys)), "a reading was stored twice"


def assert_faults_are_not_temperatures(stored: list[tuple[Any, ...]]) -> None:
    faults = [r for r in stored if r[4] is not None]
    assert {r[4] for r in faults} >= {"power_on", "disconnected", "zero_scratchpad"}
    assert all(r[2] is None and r[3] & 1 for r in faults)
    # The script's good values are 4.5 and 5.0: 85 and -127 never appear as temperatures.
    assert {r[2] for r in stored if r[0] == "t2" and r[4] is None} <= {4.5, 5.0}


def make_board(
    micropython_bin: str, firmware_build: Path, tmp_path: Path, **config: Any
) -> UnixBoard:
    return UnixBoard(micropython_bin, firmware_build, tmp_path / "board", board_config(**config))


def test_mqtt_readings_land_in_timescaledb_exactly_once(
    micropython_bin: str,
    firmware_build: Path,
    tmp_path: Path,
    secure_broker: MosquittoBroker,
    mqtt_collector: CollectorProcess,
    fresh_database_url: str,
) -> None:
    board = make_board(micropython_bin, firmware_build, tmp_path, mqtt_port=secure_broker.port)
    board.start()
    try:
        wait_for(lambda: len(rows(fresh_database_url)) >= 30, 60, what="30 readings stored")
    finally:
        board.kill()
    stored = rows(fresh_database_url)
    assert len(stored) >= acked_stored(board.log())
    assert_exactly_once(stored)
    assert_faults_are_not_temperatures(stored)
    assert "Error" not in board.log()


def test_coap_readings_land_in_timescaledb_exactly_once(
    micropython_bin: str, firmware_build: Path, tmp_path: Path, fresh_database_url: str
) -> None:
    collector = start_collector(fresh_database_url, None)
    board = make_board(
        micropython_bin, firmware_build, tmp_path, transport="coap", coap_port=collector.coap_port
    )
    board.start()
    try:
        wait_for(lambda: len(rows(fresh_database_url)) >= 30, 60, what="30 readings stored")
    finally:
        board.kill()
        collector.stop()
    stored = rows(fresh_database_url)
    assert len(stored) >= acked_stored(board.log())
    assert_exactly_once(stored)
    assert_faults_are_not_temperatures(stored)
    assert "Error" not in board.log()


def test_killed_board_resends_its_spool_after_reboot_without_duplicates(
    micropython_bin: str,
    firmware_build: Path,
    tmp_path: Path,
    secure_broker: MosquittoBroker,
    mqtt_collector: CollectorProcess,
    fresh_database_url: str,
) -> None:
    # Acks are slow to come (the collector is stopped), so the spool holds unacknowledged batches
    # when the plug is pulled.
    mqtt_collector.stop()
    board = make_board(micropython_bin, firmware_build, tmp_path, mqtt_port=secure_broker.port)
    board.start()
    wait_for(lambda: board.spooled_records() >= 60, 30, what="records on flash")
    board.wait_log("TW connected")
    board.kill()
    on_flash = board.spooled_records()
    assert rows(fresh_database_url) == []

    mqtt_collector.start().wait_ready()
    board.start()
    try:
        # Everything that was on flash when the board died gets stored, once.
        wait_for(lambda: len(rows(fresh_database_url)) >= on_flash, 60, what="spool delivered")
        board.wait_log("TW ack", count=board.log().count("TW ack") + 2, timeout_s=30)
    finally:
        board.kill()
    stored = rows(fresh_database_url)
    assert_exactly_once(stored)
    assert len(stored) >= on_flash


def test_outage_longer_than_the_ram_buffer_loses_nothing_from_flash(
    micropython_bin: str,
    firmware_build: Path,
    tmp_path: Path,
    secure_broker: MosquittoBroker,
    mqtt_collector: CollectorProcess,
    fresh_database_url: str,
) -> None:
    board = make_board(micropython_bin, firmware_build, tmp_path, mqtt_port=secure_broker.port)
    board.start()
    try:
        board.wait_log("TW ack", timeout_s=60)
        secure_broker.stop()
        # 16 records of RAM ring: wait until far more than that piled up on flash.
        wait_for(lambda: board.spooled_records() >= 120, 60, what="backlog on flash")
        secure_broker.start()
        board.wait_log("TW connected", count=2, timeout_s=60)
        wait_for(lambda: board.spooled_records() < 40, 60, what="backlog drained")
        board.kill()
    finally:
        board.kill()
    stored = rows(fresh_database_url)
    assert_exactly_once(stored)
    # Every sampling cycle of the outage is in the database: no gap longer than a few periods.
    times = sorted(r[1] for r in stored if r[0] == "t1")
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert max(gaps) < 1.0, f"a gap of {max(gaps)} s in the stored series"
