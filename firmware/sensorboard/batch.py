"""Protocol v1 batches built from spooled records straight into one preallocated buffer.

``shared.protocol.encode_batch`` needs every reading as a tuple in a list first, which on a 64 KB
heap costs more than the rest of the loop together. This encoder writes the same bytes (the
envelope in the order ``encode_batch`` uses, each record through ``protocol.encode_reading`` /
``encode_event``), one record at a time; a test pins it to ``encode_batch`` byte for byte.
"""

import struct

from sensorboard import records
from sensorboard.clock import EPOCH_2020
from shared import protocol


class BatchEncoder:
    def __init__(self, max_bytes):
        self.buf = bytearray(max_bytes)
        self.view = memoryview(self.buf)
        self.length = 0
        self.overflow = False

    def _put(self, text):
        data = text.encode() if isinstance(text, str) else text
        end = self.length + len(data)
        if end > len(self.buf):
            self.overflow = True
            return
        self.view[self.length : end] = data
        self.length = end

    def encode(self, device_id, seq, boot_id, source, count, sensor_ids):
        """Encode ``count`` records from ``source`` (a record buffer); returns a memoryview of
        the payload, or ``None`` when it does not fit the buffer (send fewer records)."""
        self.length = 0
        self.overflow = False
        fmt = records.RECORD_FORMAT
        size = records.RECORD_SIZE
        t0 = struct.unpack_from(fmt, source, 0)[0]
        self._put('{"v":1,"dev":"' + device_id + '","seq":' + str(seq) + ',"boot":"')
        self._put(boot_id + '","t0":' + str(t0 + EPOCH_2020) + ',"r":[')
        events = 0
        first = True
        for i in range(count):
            sec, value, _, ms, sensor, quality, fault, kind, _ = struct.unpack_from(
                fmt, source, i * size
            )
            if kind != records.KIND_READING:
                events += 1
                continue
            if sensor >= len(sensor_ids):
                continue  # written under an older config that had more sensors
            if not first:
                self._put(",")
            first = False
            reason = protocol.FAULT_REASONS[fault - 1] if quality & protocol.Q_PROBE_FAULT else None
            celsius = None if value == records.NO_VALUE else value / 10000
            dt_ms = (sec - t0) * 1000 + ms
            self._put(protocol.encode_reading(sensor_ids[sensor], dt_ms, celsius, quality, reason))
        self._put("]")
        if events:
            self._put(',"ev":[')
            first = True
            for i in range(count):
                sec, value, detail, ms, sensor, _, _, kind, _ = struct.unpack_from(
                    fmt, source, i * size
                )
                if kind == records.KIND_READING or sensor >= len(sensor_ids):
                    continue
                if not first:
                    self._put(",")
                first = False
                self._put(
                    protocol.encode_event(
                        sensor_ids[sensor],
                        (sec - t0) * 1000 + ms,
                        protocol.EVENT_KINDS[kind - 1],
                        None if value == records.NO_VALUE else value / 10000,
                        None if detail == records.NO_VALUE else detail / 10000,
                    )
                )
            self._put("]")
        self._put("}")
        if self.overflow:
            return None
        return self.view[: self.length]
