"""Fixed-size binary records and the RAM ring buffer that holds them until the flash spool.

A record is 20 bytes (``<IiiHBBBBH``): UTC seconds since 2020-01-01 (see ``clock``), value and
detail in 1/10000 °C, milliseconds, sensor index, quality flags, fault code, kind (0 a reading,
else 1 + index into ``protocol.EVENT_KINDS``) and a reserved word. Integers only, so pushing a
reading allocates nothing: values stay small ints and the ring is one preallocated ``bytearray``.
"""

import struct

from shared.compat import const

RECORD_FORMAT = "<IiiHBBBBH"
RECORD_SIZE = const(20)
KIND_READING = const(0)
NO_VALUE = const(-2147483648)  # "null" in value/detail (a fault, or an event without detail)


class Ring:
    """A fixed-capacity FIFO of records in one preallocated buffer."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.buf = bytearray(capacity * RECORD_SIZE)
        self.view = memoryview(self.buf)
        self.head = 0  # index of the oldest record
        self.count = 0
        self.overwritten = 0  # records lost because the ring was full and flash refused them

    def push(self, sec, ms, value, detail, sensor, quality, fault, kind):
        if self.count == self.capacity:
            # Only reached when the flash spool cannot take data: keep the newest readings.
            self.head = (self.head + 1) % self.capacity
            self.count -= 1
            self.overwritten += 1
        slot = (self.head + self.count) % self.capacity
        struct.pack_into(
            RECORD_FORMAT,
            self.buf,
            slot * RECORD_SIZE,
            sec,
            value,
            detail,
            ms,
            sensor,
            quality,
            fault,
            kind,
            0,
        )
        self.count += 1

    def chunks(self):
        """At most two memoryviews covering the records oldest first (the ring may wrap)."""
        if self.count == 0:
            return None, None
        start = self.head * RECORD_SIZE
        end = self.head + self.count
        if end <= self.capacity:
            return self.view[start : end * RECORD_SIZE], None
        return self.view[start:], self.view[: (end - self.capacity) * RECORD_SIZE]
