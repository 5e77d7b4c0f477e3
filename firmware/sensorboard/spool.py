"""The flash spool: append-only segment files of records, rotated, deleted only once acknowledged.

Layout in ``<root>/spool/``: ``00000001.seg``, ``00000002.seg``, ... each holding up to
``segment_records`` records appended in batches (one write per flush of the RAM ring, to spare the
flash), and ``cursor`` holding ``"<segment> <record>"``: the first record not yet acknowledged by
the collector. The cursor is rewritten once per acknowledged batch, never per reading.

After a power loss a segment may end in a torn record: its whole records are still sent, and new
records go to a fresh segment so that nothing written later is misaligned. When the spool holds
``max_segments`` segments the oldest is dropped and counted, so a long outage cannot fill the flash.
"""

import os

from sensorboard.records import RECORD_SIZE

# Kept to few functions on purpose: on a 64 KB heap every function costs a couple of hundred bytes.


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


class Spool:
    """Durable FIFO of records between the RAM ring and the transport."""

    def __init__(self, root, segment_records=256, max_segments=16):
        self.dir = (root + "/spool") if root else "spool"
        self.segment_records = segment_records
        self.max_segments = max_segments
        self.dropped = 0  # records deleted unsent because the spool was full
        self.flash_errors = 0
        try:
            os.mkdir(self.dir)
        except OSError:
            pass  # exists already
        segments = []
        for entry in os.listdir(self.dir):
            if entry.endswith(".seg") and len(entry) == 12:
                try:
                    segments.append(int(entry[:8]))
                except ValueError:
                    pass
        segments.sort()
        self.segments = segments
        try:
            with open(self.dir + "/cursor") as f:
                parts = f.read().split()
            self.read_seg, self.read_idx = int(parts[0]), int(parts[1])
        except (OSError, ValueError, IndexError):
            self.read_seg, self.read_idx = (segments[0] if segments else 1), 0
        # Segments before the cursor were acknowledged but not deleted (power lost in between).
        while segments and segments[0] < self.read_seg:
            self._remove(segments.pop(0))
        if segments and self.read_seg < segments[0]:
            self.read_seg, self.read_idx = segments[0], 0
        self.write_seg = segments[-1] if segments else max(self.read_seg, 1)
        size = _size(self._path(self.write_seg))
        self.write_count = size // RECORD_SIZE if size > 0 else 0
        if segments and size % RECORD_SIZE:
            self.write_seg += 1  # torn tail: start clean
            self.write_count = 0
        if not segments:
            self.read_seg, self.read_idx = self.write_seg, 0

    def _path(self, number):
        text = str(number)
        return self.dir + "/" + "0" * (8 - len(text)) + text + ".seg"

    def _records_in(self, number):
        size = _size(self._path(number))
        return size // RECORD_SIZE if size > 0 else 0

    def _remove(self, number):
        try:
            os.remove(self._path(number))
        except OSError:
            pass

    def _save_cursor(self):
        tmp = self.dir + "/cursor.tmp"
        with open(tmp, "w") as f:
            f.write(str(self.read_seg) + " " + str(self.read_idx))
        os.rename(tmp, self.dir + "/cursor")

    def pending(self):
        """Records on flash not yet acknowledged."""
        total = 0
        for number in self.segments:
            total += self._records_in(number)
        return total - self.read_idx if self.segments else 0

    def append(self, chunk):
        """Append whole records (a buffer or memoryview) in as few writes as the rotation allows.
        Returns False when the flash refused the write (the caller keeps the data in RAM)."""
        records = len(chunk) // RECORD_SIZE
        done = 0
        segments = self.segments
        while done < records:
            if self.write_count >= self.segment_records:
                self.write_seg += 1
                self.write_count = 0
            if not segments or segments[-1] != self.write_seg:
                segments.append(self.write_seg)
                while len(segments) > self.max_segments:
                    # Full: the oldest segment goes, and what it held unsent is counted.
                    oldest = segments.pop(0)
                    lost = self._records_in(oldest)
                    if oldest == self.read_seg:
                        lost -= self.read_idx
                        self.read_seg, self.read_idx = segments[0], 0
                        self._save_cursor()
                    self.dropped += lost
                    self._remove(oldest)
            n = min(records - done, self.segment_records - self.write_count)
            try:
                with open(self._path(self.write_seg), "ab") as f:
                    f.write(chunk[done * RECORD_SIZE : (done + n) * RECORD_SIZE])
            except OSError:
                self.flash_errors += 1
                if self.write_count == 0 and segments[-1] == self.write_seg:
                    segments.pop()
                return False
            done += n
            self.write_count += n
        return True

    def read(self, buf, max_records):
        """Copy up to ``max_records`` unacknowledged records (from one segment) into ``buf``;
        returns how many. The same records come back until :meth:`ack` moves past them."""
        while self.segments:
            available = self._records_in(self.read_seg) - self.read_idx
            if available > 0:
                n = min(available, max_records)
                with open(self._path(self.read_seg), "rb") as f:
                    f.seek(self.read_idx * RECORD_SIZE)
                    f.readinto(memoryview(buf)[: n * RECORD_SIZE])
                return n
            if self.read_seg == self.write_seg:
                return 0
            self.ack(0)  # an exhausted, closed segment: move on
        return 0

    def ack(self, count):
        """The collector committed the ``count`` records last returned by :meth:`read`."""
        self.read_idx += count
        if self.read_seg != self.write_seg and self.read_idx >= self._records_in(self.read_seg):
            self._remove(self.read_seg)
            if self.segments and self.segments[0] == self.read_seg:
                self.segments.pop(0)
            self.read_seg = self.segments[0] if self.segments else self.write_seg
            self.read_idx = 0
        self._save_cursor()
