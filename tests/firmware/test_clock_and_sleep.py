"""Clock sync over SNTP (a real UDP server in the test) with the "unsynced" flag until it works,
and deep-sleep mode keeping detector state in RTC memory across wakes."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.firmware.board import UnixBoard
from tests.firmware.conftest import board_config
from tests.firmware.mp import json_lines, run_on_board

NTP_TO_UNIX = 2208988800
SERVER_TIME = 1_763_900_000  # what the test's NTP server says it is


class SntpServer:
    """Answers SNTP requests with a fixed time (mode 4, stratum 1)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                _, client = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            self.requests += 1
            reply = bytearray(48)
            reply[0] = (0 << 6) | (4 << 3) | 4
            reply[1] = 1
            struct.pack_into("!II", reply, 40, SERVER_TIME + NTP_TO_UNIX, 1 << 31)  # .5 s
            self.sock.sendto(bytes(reply), client)

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def sntp() -> Iterator[SntpServer]:
    server = SntpServer()
    yield server
    server.close()


CLOCK = """
import json
from sensorboard.clock import Clock, EPOCH_2020
c = Clock("127.0.0.1", {port}, 3600)
before = c.synced
ok = c.sync(0.3)
c.now()
print(json.dumps([before, ok, c.synced, c.sec + EPOCH_2020, c.ms, c.sync_failures]))
"""


def test_sntp_sync_sets_the_clock(micropython_bin: str, firmware_build: Path, sntp: SntpServer):
    out = run_on_board(micropython_bin, firmware_build, CLOCK.format(port=sntp.port))
    ((before, ok, synced, sec, ms, failures),) = json_lines(out)
    assert (before, ok, synced, failures) == (False, True, True, 0)
    assert sec == SERVER_TIME and 500 <= ms < 600


def test_no_ntp_answer_keeps_the_unsynced_flag(micropython_bin: str, firmware_build: Path):
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))  # bound, never answers
    try:
        out = run_on_board(
            micropython_bin, firmware_build, CLOCK.format(port=dead.getsockname()[1])
        )
    finally:
        dead.close()
    ((before, ok, synced, _, _, failures),) = json_lines(out)
    assert (before, ok, synced, failures) == (False, False, False, 1)


def test_readings_before_sync_are_flagged_unsynced(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    config = board_config(transport="none", ntp_host="127.0.0.1", ntp_port=dead.getsockname()[1])
    board = UnixBoard(micropython_bin, firmware_build, tmp_path / "board", config)
    board.start()
    try:
        deadline = time.monotonic() + 30
        while board.spooled_records() < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        board.kill()
        dead.close()
    data = b"".join(p.read_bytes() for p in sorted((tmp_path / "board/spool").glob("*.seg")))
    qualities = {data[i + 15] for i in range(0, len(data) - 19, 20)}
    assert qualities and all(q & 2 for q in qualities)  # Q_CLOCK_UNSYNCED on every record


def test_deep_sleep_keeps_detector_state_in_rtc_memory(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    config = board_config(
        transport="none",
        deep_sleep_s=60,
        sensors=[{"id": "t1", "kind": "sim", "script": [30.0]}],
        detectors={"threshold": {"high_c": 25.0, "min_duration_s": 0}},
    )
    board = UnixBoard(micropython_bin, firmware_build, tmp_path / "board", config)
    for wake in range(3):
        board.start()
        assert board.wait_exit() == 0
        rtc = json.loads((tmp_path / "board/.rtc_memory").read_bytes()[3:])
        assert rtc[0][0][0][0] == 1  # threshold state "high" survives the sleep
        assert board.spooled_records() == 2 + wake  # a reading per wake, one event in all
    assert board.log().count("TW deepsleep 60000") == 3
