"""The board's main loop: sample -> detect -> RAM ring -> flash spool -> transport -> ack.

:meth:`Board.step` does one non-blocking pass and is what the loop repeats. Sampling keeps its
state in preallocated buffers and small ints, so a pass without network traffic allocates
nothing except the floats the detectors compute with. A batch is deleted from the spool only
when the collector's ack for its sequence number arrives; every send gets a new sequence number,
so a late ack can never acknowledge records it did not cover.
"""

import os
import sys
import time

from sensorboard import forget, hw, records
from sensorboard.batch import BatchEncoder
from sensorboard.clock import Clock
from sensorboard.spool import Spool
from shared import protocol
from shared.compat import const

_FIRST_RETRY_S = const(1)


# Record kind codes of detector events: index into protocol.EVENT_KINDS + 1 (0 is a reading).
_KIND_CODE = {}
for _i in range(len(protocol.EVENT_KINDS)):
    _KIND_CODE[protocol.EVENT_KINDS[_i]] = _i + 1
_ANOMALY_CODE = _KIND_CODE[protocol.EV_ANOMALY]


def _z_e4(z):
    # A z-score in 1/10000, clipped to what the record's int32 holds.
    if z != z:
        return 0
    return int(max(-200000.0, min(200000.0, z)) * 10000)


def _nothing(*_):
    pass


def _new_boot_id():
    raw = os.urandom(4)
    return "".join("%02x" % b for b in raw)


class Board:
    """Everything one board runs; ``root`` is its filesystem root (``""`` on a real board)."""

    def __init__(self, cfg, root, sensors, detectors):
        import gc

        # The large buffers first, while the heap is still in one piece.
        gc.collect()
        self.ring = records.Ring(cfg.ring_records)
        self.batch = bytearray(cfg.batch_records * records.RECORD_SIZE)
        payload_bytes = cfg.batch_records * 48 + 128
        if cfg.transport == "coap":
            payload_bytes = min(payload_bytes, 1024)  # one datagram, no block-wise transfer
        self.encoder = BatchEncoder(payload_bytes)
        self.root = root
        # Only what the loop needs is kept: the Config object is freed after start-up.
        self.device_id = cfg.device_id
        self.transport_name = cfg.transport
        self.wifi_ssid = cfg.wifi_ssid
        self.wifi_password = cfg.wifi_password
        self.batch_records = cfg.batch_records
        self.flush_records = cfg.flush_records
        self.deep_sleep_s = cfg.deep_sleep_s
        self.boot_id = _new_boot_id()
        self.feed = hw.watchdog(cfg.watchdog_s) or _nothing
        self.led = hw.status_led(cfg.status_led_pin) or _nothing
        self.clock = Clock(cfg.ntp_host, cfg.ntp_port, cfg.ntp_resync_s)
        self.sensors = sensors
        self.detectors = detectors
        self.spool = Spool(root, cfg.segment_records, cfg.max_segments)
        self.transport = None  # see attach()
        self.offline = True
        self.sensor_ids = []
        for sensor in self.sensors:  # no comprehension: each one is a function object
            self.sensor_ids.append(sensor.sensor_id)
        self.period_ms = int(cfg.sample_period_s * 1000)
        self.conversion_ms = 0
        for sensor in self.sensors:
            self.conversion_ms = max(self.conversion_ms, sensor.conversion_ms)
        self.flush_ms = int(cfg.flush_interval_s * 1000)
        self.ack_timeout_ms = int(cfg.ack_timeout_s * 1000)
        self.retry_max_ms = int(cfg.retry_max_s * 1000)
        now = time.ticks_ms()
        self.next_sample = now
        self.read_at = now
        self.converting = False
        self.cycle = 0
        self.sample_sec = 0
        self.sample_ms = 0
        self.last_flush = now
        self.retry_at = now
        self.retry_ms = _FIRST_RETRY_S * 1000
        self.seq = 0
        self.inflight = 0  # records covered by the batch awaiting its ack (0: none)
        self.inflight_at = now
        self.samples = 0
        self.faults = 0
        self.events = 0
        self.sent = 0
        self.acked = 0
        self.resends = 0
        self.push_errors = 0  # values of pushed configs that were refused (see pushed.py)
        self.push_writes = 0  # times pushed.json was written

    def attach(self, transport):
        """Give the board its transport (``None``: offline, everything stays on flash)."""
        self.transport = transport
        self.offline = transport is None

    # --- sampling -------------------------------------------------------------------------

    def _start_conversions(self, now):
        self.cycle += 1
        self.clock.now()
        # The measurement happens during the conversion: time it at the start.
        self.sample_sec = self.clock.sec
        self.sample_ms = self.clock.ms
        for sensor in self.sensors:
            sensor.start(self.cycle)
        self.read_at = time.ticks_add(now, self.conversion_ms)
        self.converting = True
        self.next_sample = time.ticks_add(self.next_sample, self.period_ms)
        if time.ticks_diff(self.next_sample, now) < 0:
            self.next_sample = time.ticks_add(now, self.period_ms)  # fell behind: do not burst

    def _read_all(self):
        self.converting = False
        base_quality = 0 if self.clock.synced else protocol.Q_CLOCK_UNSYNCED
        sec = self.sample_sec
        ms = self.sample_ms
        ring = self.ring
        for index in range(len(self.sensors)):
            if ring.count == ring.capacity:
                self.flush()
            sensor = self.sensors[index]
            fault = sensor.read()
            self.samples += 1
            if fault:
                # A fault carries no temperature and is never fed to the detectors.
                self.faults += 1
                ring.push(
                    sec,
                    ms,
                    records.NO_VALUE,
                    records.NO_VALUE,
                    index,
                    base_quality | protocol.Q_PROBE_FAULT,
                    fault,
                    records.KIND_READING,
                )
                continue
            value = sensor.value_e4
            ring.push(sec, ms, value, records.NO_VALUE, index, base_quality, 0, 0)
            detectors = self.detectors[index]
            if detectors is not None:
                self._detect(detectors, index, sec, ms, value)

    def _detect(self, detectors, index, sec, ms, value):
        celsius = value / 10000
        ring = self.ring
        threshold, ewma = detectors
        if threshold is not None:
            kind = threshold.update(sec, celsius)
            if kind is not None:
                limit = threshold.last_limit_c
                detail = records.NO_VALUE if limit is None else int(limit * 10000)
                if ring.count == ring.capacity:
                    self.flush()
                ring.push(sec, ms, value, detail, index, 0, 0, _KIND_CODE[kind])
                self.events += 1
        if ewma is not None:
            z, anomaly = ewma.update(celsius)
            if anomaly:
                if ring.count == ring.capacity:
                    self.flush()
                ring.push(sec, ms, value, _z_e4(z), index, 0, 0, _ANOMALY_CODE)
                self.events += 1

    def flush(self):
        """Move the RAM ring to the flash spool in (at most) two writes."""
        first, second = self.ring.chunks()
        self.last_flush = time.ticks_ms()
        if first is None:
            return True
        ok = self.spool.append(first)
        if ok and second is not None:
            ok = self.spool.append(second)
        if ok:
            self.ring.head = 0
            self.ring.count = 0
        return ok

    # --- delivery -------------------------------------------------------------------------

    def _connect(self, now):
        if time.ticks_diff(now, self.retry_at) < 0:
            return False
        self.feed()
        link = self.transport
        if link is None:
            return False
        ok = True
        if self.wifi_ssid:  # a board on Wi-Fi (the unix port has the host's network)
            from sensorboard import net

            ok = net.connected() or net.connect(
                self.wifi_ssid, self.wifi_password, 1, feed=self.feed
            )
        if ok:
            ok = link.connect()
        if ok:
            self.retry_ms = _FIRST_RETRY_S * 1000
            print("TW connected", self.transport_name)
            return True
        self.retry_at = time.ticks_add(time.ticks_ms(), self.retry_ms)
        self.retry_ms = min(self.retry_ms * 2, self.retry_max_ms)
        return False

    def _take_ack(self, link):
        ack = link.last_ack
        if ack is None:
            return
        link.last_ack = None
        if not self.inflight or ack[0] != self.seq:
            return  # an ack for an older send: its records are covered by a newer batch
        self.spool.ack(self.inflight)
        self.acked += self.inflight
        print("TW ack", ack[0], self.inflight, ack[1], ack[2], ack[3])
        self.inflight = 0
        self.seq += 1

    def take_pushed(self, link):
        """Apply the config the collector pushed; its code is loaded only for this."""
        import gc

        payload = link.pushed
        link.pushed = None
        gc.collect()  # room for the module and the parsed message
        from sensorboard import pushed

        pushed.take(self, self.root, payload)
        del pushed
        forget("sensorboard.pushed")

    def deliver(self, now):
        """Connect when due, take acks, send the next batch; never blocks for long."""
        link = self.transport
        if link is None:
            return
        if not link.connected and not self._connect(now):
            return
        self.feed()
        link.poll()
        self._take_ack(link)
        if link.pushed is not None:
            self.take_pushed(link)
        if self.inflight:
            if time.ticks_diff(now, self.inflight_at) < self.ack_timeout_ms:
                return
            # No ack in time: send again under a new sequence number.
            self.inflight = 0
            self.seq += 1
            self.resends += 1
        count = self.spool.read(self.batch, self.batch_records)
        if not count:
            return
        while True:
            payload = self.encoder.encode(
                self.device_id, self.seq, self.boot_id, self.batch, count, self.sensor_ids
            )
            if payload is not None or count == 1:
                break
            count //= 2
        if payload is None:
            self.spool.ack(count)  # one record larger than a datagram cannot ever be sent
            return
        self.led(1)
        ok = link.send(self.seq, payload)
        self.led(0)
        if not ok:
            self.retry_at = time.ticks_add(time.ticks_ms(), self.retry_ms)
            return
        self.inflight = count
        self.inflight_at = time.ticks_ms()
        self.sent += 1
        self._take_ack(link)  # CoAP brings the ack with the response

    # --- the loop -------------------------------------------------------------------------

    def step(self):
        """One pass of the loop."""
        now = time.ticks_ms()
        self.feed()
        if self.converting:
            if time.ticks_diff(now, self.read_at) >= 0:
                self._read_all()
        elif time.ticks_diff(now, self.next_sample) >= 0:
            self._start_conversions(now)
            if self.conversion_ms == 0:
                self._read_all()
        ring = self.ring
        if ring.count and (
            ring.count >= self.flush_records
            or time.ticks_diff(now, self.last_flush) >= self.flush_ms
        ):
            self.flush()
        if self.clock.sync_due():
            self.clock.sync()
        self.deliver(now)

    def run(self):
        print("TW start", self.device_id, self.boot_id, self.transport_name)
        while True:
            self.step()
            link = self.transport
            time.sleep_ms(5 if self.converting or (link is not None and link.connected) else 20)


def load_config(root):
    """``(config, fatal problems)``; the config module is unloaded again afterwards."""
    from sensorboard import config

    cfg = config.load(root)
    problems = config.fatal(cfg)
    del config
    forget("sensorboard.config")
    return cfg, problems


def _build(cfg, root):
    from sensorboard import assemble

    board = Board(cfg, root, assemble.sensors(cfg), assemble.detectors(cfg))
    board.attach(assemble.transport(cfg, board.boot_id, board.feed))
    del assemble
    forget("sensorboard.assemble")
    return board


def start(root):
    """Load the config and build the board, one step at a time so that the start-up code of
    each step is gone before the next (a 64 KB heap has no room for all of it at once);
    ``None``, after saying why, if the config does not allow the board to run."""
    import gc

    cfg, problems = load_config(root)
    for problem in cfg.errors:
        print("TW config", problem)
    for problem in problems:
        print("TW config fatal", problem)
    if problems:
        return None
    gc.collect()
    board = _build(cfg, root)
    try:
        os.stat(root + "/pushed.json" if root else "pushed.json")
    except OSError:
        return board  # nothing was ever pushed: spare the heap the module
    gc.collect()
    from sensorboard import pushed

    pushed.load(board, root)  # the collector's last pushed config wins over config.json
    del pushed
    forget("sensorboard.pushed")
    return board


def main(root=None):
    if root is None:
        # The board's filesystem root: the working directory on the unix port, "" on a board.
        root = os.getcwd()
        root = "" if root == "/" else root
    board = start(root)
    if board is None:
        if sys.platform in ("linux", "darwin"):  # the unix port: say so with the exit status
            sys.exit(2)
        # On a board: wait for a technician to fix config.json rather than boot-looping.
        while True:
            time.sleep(60)
    if board.deep_sleep_s:
        from sensorboard import sleep

        sleep.run_once_and_sleep(board)
    else:
        board.run()
