"""The RAM ring and the flash spool under the real MicroPython: order, rotation, acknowledgement,
recovery after a reboot (a new Spool on the same folder), a torn tail and a full spool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.firmware.mp import json_lines, run_on_board

PRELUDE = """
import json, os, struct
from sensorboard import records
from sensorboard.spool import Spool
ROOT = {root!r}

def fill(ring, start, n):
    for i in range(start, start + n):
        ring.push(i, 0, i * 10, records.NO_VALUE, 0, 0, 0, 0)

def secs(buf, n):
    return [struct.unpack_from(records.RECORD_FORMAT, buf, i * records.RECORD_SIZE)[0]
            for i in range(n)]

def write(spool, start, n):
    ring = records.Ring(n)
    fill(ring, start, n)
    a, b = ring.chunks()
    assert spool.append(a)
"""


def run(micropython_bin: str, build: Path, root: Path, code: str) -> list[Any]:
    out = run_on_board(micropython_bin, build, PRELUDE.format(root=str(root)) + code)
    return json_lines(out)


def test_ring_keeps_order_across_wrap_and_keeps_newest_when_full(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    code = """
ring = records.Ring(4)
fill(ring, 1, 3)
ring.head, ring.count = 3, 0
fill(ring, 10, 3)            # wraps: slots 3, 0, 1
a, b = ring.chunks()
print(json.dumps([secs(a, len(a) // 20), secs(b, len(b) // 20)]))
fill(ring, 20, 3)            # 6 into 4 slots: the 2 oldest go
a, b = ring.chunks()
both = bytes(a) + (bytes(b) if b is not None else b"")
print(json.dumps([secs(both, 4), ring.overwritten]))
"""
    first, second = run(micropython_bin, firmware_build, tmp_path, code)
    assert first == [[10], [11, 12]]
    assert second == [[12, 20, 21, 22], 2]


def test_spool_rotates_reads_in_order_and_deletes_only_acked_segments(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    code = """
s = Spool(ROOT, segment_records=8, max_segments=10)
write(s, 0, 20)                      # 8 + 8 + 4 over three segment files
print(json.dumps(sorted(os.listdir(ROOT + "/spool"))))
buf = bytearray(5 * records.RECORD_SIZE)
got = []
while True:
    n = s.read(buf, 5)
    if not n:
        break
    again = s.read(buf, 5)           # unacknowledged records come back
    assert again == n
    got += secs(buf, n)
    s.ack(n)
print(json.dumps([got, s.pending(), sorted(os.listdir(ROOT + "/spool"))]))
"""
    files, (got, pending, left) = run(micropython_bin, firmware_build, tmp_path, code)
    assert files == ["00000001.seg", "00000002.seg", "00000003.seg"]
    assert got == list(range(20))
    assert pending == 0
    # Acknowledged closed segments are gone; the one being written stays.
    assert left == ["00000003.seg", "cursor"]


def test_spool_survives_a_reboot_at_its_cursor(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    code = """
s = Spool(ROOT, segment_records=8)
write(s, 0, 12)
buf = bytearray(5 * records.RECORD_SIZE)
n = s.read(buf, 5)
s.ack(n)                               # 0..4 committed
n = s.read(buf, 5)                     # 5..7 sent, power lost before the ack
s2 = Spool(ROOT, segment_records=8)    # reboot
n = s2.read(buf, 5)
print(json.dumps([secs(buf, n), s2.pending()]))
write(s2, 100, 2)
print(json.dumps([s2.pending()]))
"""
    (resent, pending), after = run(micropython_bin, firmware_build, tmp_path, code)
    assert resent == [5, 6, 7]
    assert pending == 7
    assert after == [9]


def test_torn_tail_keeps_whole_records_and_starts_a_fresh_segment(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    code = """
s = Spool(ROOT, segment_records=64)
write(s, 0, 3)
with open(ROOT + "/spool/00000001.seg", "ab") as f:
    f.write(b"\\x01\\x02\\x03")          # power lost in the middle of a record
s2 = Spool(ROOT, segment_records=64)
write(s2, 50, 2)
buf = bytearray(10 * records.RECORD_SIZE)
out = []
while True:
    n = s2.read(buf, 10)
    if not n:
        break
    out += secs(buf, n)
    s2.ack(n)
print(json.dumps([out, sorted(os.listdir(ROOT + "/spool"))]))
"""
    ((records_read, files),) = run(micropython_bin, firmware_build, tmp_path, code)
    assert records_read == [0, 1, 2, 50, 51]
    assert "00000002.seg" in files


def test_full_spool_drops_the_oldest_segment_and_counts_it(
    micropython_bin: str, firmware_build: Path, tmp_path: Path
) -> None:
    code = """
s = Spool(ROOT, segment_records=4, max_segments=3)
write(s, 0, 20)                       # 5 segments' worth into room for 3
buf = bytearray(4 * records.RECORD_SIZE)
n = s.read(buf, 4)
print(json.dumps([s.dropped, secs(buf, n), s.pending()]))
"""
    ((dropped, first, pending),) = run(micropython_bin, firmware_build, tmp_path, code)
    assert dropped == 8
    assert first == [8, 9, 10, 11]
    assert pending == 12
