"""The board's streaming batch encoder writes exactly the bytes of ``protocol.encode_batch``."""

from __future__ import annotations

from pathlib import Path

from shared import protocol
from shared.decode import decode_batch
from tests.firmware.mp import run_on_board

EPOCH_2020 = 1577836800

CODE = """
import struct
from sensorboard import records
from sensorboard.batch import BatchEncoder
ring = records.Ring(8)
N = records.NO_VALUE
ring.push(100, 0, 210625, N, 0, 0, 0, 0)
ring.push(100, 250, N, N, 1, 1, 1, 0)        # power_on fault
ring.push(101, 0, -42000, N, 0, 2, 0, 0)     # clock unsynced
ring.push(101, 0, 315000, 300000, 0, 0, 0, 1)  # threshold_high event, limit 30
ring.push(102, 999, N, N, 1, 3, 3, 0)        # zero scratchpad, unsynced
ring.push(103, 5, 225000, 23456, 0, 0, 0, 4)   # anomaly, z 2.3456
enc = BatchEncoder(1000)
payload = enc.encode("dev1", 7, "9f2c01aa", ring.buf, 6, ["t1", "t2"])
print(bytes(payload).decode())
print(enc.encode("dev1", 7, "9f2c01aa", ring.buf, 6, ["t1", "t2"]) is not None)
small = BatchEncoder(60)
print(small.encode("dev1", 7, "9f2c01aa", ring.buf, 6, ["t1", "t2"]))
"""


def test_encoder_matches_protocol_encode_batch(micropython_bin: str, firmware_build: Path) -> None:
    lines = run_on_board(micropython_bin, firmware_build, CODE).splitlines()
    t0 = EPOCH_2020 + 100
    expected = protocol.encode_batch(
        "dev1",
        7,
        "9f2c01aa",
        t0,
        [
            ("t1", 0, 21.0625, 0),
            ("t2", 250, None, 1, "power_on"),
            ("t1", 1000, -4.2, 2),
            ("t2", 2999, None, 3, "zero_scratchpad"),
        ],
        [
            ("t1", 1000, "threshold_high", 31.5, 30.0),
            ("t1", 3005, "anomaly", 22.5, 2.3456),
        ],
    )
    assert lines[0].encode() == expected
    decoded = decode_batch(lines[0].encode())
    assert decoded.errors == []
    assert [r.value for r in decoded.readings] == [21.0625, None, -4.2, None]
    assert lines[1] == "True"
    assert lines[2] == "None"  # does not fit: the caller sends fewer records
