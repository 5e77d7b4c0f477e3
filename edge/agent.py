"""The gateway agent: sample → validate → detect → spool → forward, with acks closing the loop.

Threads: one sampler per sensor (a DS18B20 read blocks for its conversion), the transport's
network thread, and the relay's (if configured). They only put items on queues; the main loop
owns the spool, so every SQLite write happens on one thread in small transactions.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from edge.clock import ClockWatch
from edge.config import EdgeSettings, PushedConfig, apply_pushed
from edge.detect import SensorDetectors
from edge.forward import Forwarder, build_forwarder
from edge.relay import Relay, RelayItem
from edge.sampler import Sample, Sampler
from edge.sdnotify import Notifier
from edge.sensors import Sensor, build_sensor
from edge.spool import KIND_EVENTS, KIND_READINGS, Batch, EventRow, Spool
from edge.validate import Reading, validate
from shared import protocol

log = logging.getLogger(__name__)

META_DETECTORS = "detectors"
META_PUSHED = "pushed_config"
META_STATUS = "status"


class Agent:
    """One running gateway; ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        settings: EdgeSettings,
        *,
        wall_clock: Callable[[], float] = time.time,
        forwarder_factory: Callable[..., Forwarder] = build_forwarder,
        notifier: Notifier | None = None,
    ) -> None:
        self.boot_id = secrets.token_hex(4)
        self.wall_clock = wall_clock
        self.notifier = notifier or Notifier()
        self.spool = Spool(
            settings.spool_path,
            max_readings=settings.spool_max_readings,
            max_age_s=settings.spool_max_age_s,
            synchronous=settings.spool_synchronous,
        )
        pushed = self.spool.get_meta(META_PUSHED)
        if pushed:
            try:
                settings = apply_pushed(settings, PushedConfig.model_validate(pushed))
            except ValidationError as exc:
                log.warning("ignoring stored pushed config: %s", exc)
        self.settings = settings
        self.clock = ClockWatch(settings.clock_synced)
        self.sensors: list[Sensor] = []
        for cfg in settings.sensors:
            try:
                self.sensors.append(build_sensor(cfg))
            except (RuntimeError, OSError, ValueError) as exc:
                # One unusable probe must not keep the others from reporting.
                log.error("sensor %s not started: %s", cfg.id, exc)
        self.periods: dict[str, float] = {}
        self.detectors: dict[str, SensorDetectors] = {}
        saved = self.spool.get_meta(META_DETECTORS, {}) or {}
        for cfg in settings.sensors:
            self.periods[cfg.id] = cfg.sample_period_s or settings.sample_period_s
            det = SensorDetectors(cfg.id, cfg.detect)
            det.set_state(saved.get(cfg.id))
            self.detectors[cfg.id] = det
        self.samples: queue.SimpleQueue[Sample] = queue.SimpleQueue()
        self.acks: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.configs: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.relayed: queue.SimpleQueue[RelayItem] = queue.SimpleQueue()
        self.forwarder = forwarder_factory(settings, self.boot_id, self.acks.put, self.configs.put)
        self.relay: Relay | None = None
        if settings.relay is not None:
            self.relay = Relay(settings.relay, settings.device_id, self.relayed.put)
        # Sent batches by seq, with the monotonic time they were last sent (0: not yet).
        self.outstanding: dict[int, Batch] = {b.seq: b for b in self.spool.unacked()}
        self.sent_at: dict[int, float] = {}
        self.sensor_state: dict[str, dict[str, Any]] = {
            s.sensor_id: {"readings": 0, "faults": 0} for s in self.sensors
        }
        self.counters = {"readings": 0, "faults": 0, "events": 0, "acks": 0, "relayed": 0}
        self._stop = threading.Event()
        self._draining = False
        self._threads: list[threading.Thread] = []
        self._last_batch_at = time.monotonic()
        self._last_commit = 0.0
        self._last_limits = 0.0
        self._last_status = 0.0
        self._pending_events = self.spool.pending_events()

    # -- lifecycle --------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        log.info(
            "edge agent %s starting (boot %s, %d sensors, %d unacked batches in the spool)",
            self.settings.device_id,
            self.boot_id,
            len(self.sensors),
            len(self.outstanding),
        )
        self.forwarder.start()
        if self.relay is not None:
            self.relay.start()
        for sensor in self.sensors:
            t = threading.Thread(
                target=self._sampler(sensor).run, name=f"sensor-{sensor.sensor_id}"
            )
            t.daemon = True
            t.start()
            self._threads.append(t)
        self.notifier.ready(f"sampling {len(self.sensors)} sensors")
        try:
            while not self._stop.wait(0.05):
                self.step()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self.notifier.stopping()
        for t in self._threads:
            t.join(timeout=2.0)
        self.step(final=True)
        self._drain()
        if self.relay is not None:
            self.relay.stop()
        self.forwarder.stop()
        for sensor in self.sensors:
            sensor.close()
        self.spool.close()
        log.info("edge agent stopped")

    def _drain(self) -> None:
        """On stop, keep forwarding for up to ``shutdown_drain_s`` while the collector is
        reachable: a planned restart should leave an empty spool behind, not a backlog."""
        self._draining = True
        deadline = time.monotonic() + self.settings.shutdown_drain_s
        while time.monotonic() < deadline and self.forwarder.connected:
            if not (self.spool.rows or self.outstanding or self._pending_events):
                break
            self.step()
            time.sleep(0.05)
        self.step(final=True)

    # -- sampling (one thread per sensor) -------------------------------------------------------

    def _sampler(self, sensor: Sensor) -> Sampler:
        sid = sensor.sensor_id
        return Sampler(
            sensor,
            period_s=lambda: self.periods.get(sid, self.settings.sample_period_s),
            emit=self.samples.put,
            wait=self._stop.wait,
            wall_clock=self.wall_clock,
        )

    # -- main loop --------------------------------------------------------------------------------

    def step(self, final: bool = False) -> None:
        """One pass of the main loop: spool, acks, config, limits, forwarding, status."""
        now = time.monotonic()
        s = self.settings
        if final or now - self._last_commit >= s.spool_commit_interval_s:
            self._last_commit = now
            self._commit_samples()
            self._commit_relayed()
        self._handle_acks()
        self._handle_configs()
        if now - self._last_limits >= 1.0:
            self._last_limits = now
            self.spool.enforce_limits(int(self.wall_clock() * 1000))
        if not final:
            self._forward(now)
        if final or now - self._last_status >= s.status_interval_s:
            self._last_status = now
            self._publish_status()
        self.notifier.watchdog(now)

    def _commit_samples(self) -> None:
        readings: list[Reading] = []
        events: list[EventRow] = []
        synced = self.clock.synced()
        while True:
            try:
                sid, time_ms, value, fault, range_c = self.samples.get_nowait()
            except queue.Empty:
                break
            reading = validate(sid, time_ms, value, fault, range_c, synced)
            readings.append(reading)
            state = self.sensor_state.setdefault(sid, {"readings": 0, "faults": 0})
            state["readings"] += 1
            state["time_ms"] = time_ms
            if reading.fault:
                state["faults"] += 1
                state["fault"] = reading.fault
                self.counters["faults"] += 1
            else:
                state["value"] = reading.value
                state.pop("fault", None)
            det = self.detectors.get(sid)
            if det is not None and det.active:
                events.extend(det.update(reading))
        if not readings:
            return
        meta = None
        if any(d.active for d in self.detectors.values()):
            meta = {META_DETECTORS: {sid: d.get_state() for sid, d in self.detectors.items()}}
        self.spool.add(readings, events, meta)
        self.counters["readings"] += len(readings)
        if events:
            self.counters["events"] += len(events)
            self._pending_events += len(events)
            for ev in events:
                log.info("event %s on %s: %s (%s)", ev.kind, ev.sensor_id, ev.value, ev.detail)

    def _commit_relayed(self) -> None:
        while True:
            try:
                readings, events, acknowledge = self.relayed.get_nowait()
            except queue.Empty:
                return
            self.spool.add(readings, events)
            self._pending_events += len(events)
            self.counters["relayed"] += len(readings)
            acknowledge(len(readings))  # only now, after the commit, does the board hear back

    def _handle_acks(self) -> None:
        while True:
            try:
                ack = self.acks.get_nowait()
            except queue.Empty:
                return
            seq, boot = ack.get("seq"), ack.get("boot")
            if not isinstance(seq, int) or not isinstance(boot, str):
                continue
            batch = self.spool.ack(boot, seq, int(self.wall_clock() * 1000))
            if batch is None:
                continue  # a repeated ack (the batch was sent twice) or another gateway's
            self.outstanding.pop(seq, None)
            self.sent_at.pop(seq, None)
            self.counters["acks"] += 1
            if ack.get("rej"):
                log.warning("collector rejected %s records of batch %s", ack.get("rej"), seq)

    def _handle_configs(self) -> None:
        while True:
            try:
                payload = self.configs.get_nowait()
            except queue.Empty:
                return
            try:
                pushed = PushedConfig.model_validate(json.loads(payload))
                settings = apply_pushed(self.settings, pushed)
            except (ValueError, ValidationError) as exc:
                log.warning("ignoring invalid pushed config: %s", str(exc)[:300])
                continue
            self.settings = settings
            for cfg in settings.sensors:
                self.periods[cfg.id] = cfg.sample_period_s or settings.sample_period_s
                if cfg.id in self.detectors:
                    self.detectors[cfg.id].configure(cfg.detect)
            self.spool.set_meta({META_PUSHED: pushed.model_dump(exclude_none=True)})
            log.info("applied config pushed by the collector")

    def _send(self, batch: Batch, now: float) -> bool:
        payload = self.spool.encode(self.settings.device_id, batch)
        if self.forwarder.send(batch.kind, payload):
            self.sent_at[batch.seq] = now
            return True
        return False

    def _forward(self, now: float) -> None:
        s = self.settings
        if not self.forwarder.connected:
            return
        # Events first: an alert must not wait behind an outage's backlog. They take a place in
        # the window like readings: sent without one, every event batch of an outage would be
        # re-sent on every ack timeout until the collector is back.
        while self._pending_events > 0 and len(self.outstanding) < s.max_inflight_batches:
            batch = self.spool.next_batch(KIND_EVENTS, self.boot_id, protocol.MAX_EVENTS_PER_BATCH)
            if batch is None:
                self._pending_events = 0
                break
            self._pending_events -= batch.count
            self.outstanding[batch.seq] = batch
            if not self._send(batch, now):
                return
        # Then batches not acknowledged in time (or left over from before a restart), oldest first.
        for seq in sorted(self.outstanding):
            sent = self.sent_at.get(seq)
            due = sent is None or now - sent >= s.ack_timeout_s
            if due and not self._send(self.outstanding[seq], now):
                return
        # Then new readings, within the window of unacknowledged batches: memory stays bounded
        # however long the backlog is, and the backlog drains in spool order.
        while len(self.outstanding) < s.max_inflight_batches and self.spool.pending > 0:
            full = self.spool.pending >= s.batch_max_readings or self._draining
            if not full and now - self._last_batch_at < s.batch_max_age_s:
                break
            batch = self.spool.next_batch(KIND_READINGS, self.boot_id, s.batch_max_readings)
            if batch is None:
                break
            self._last_batch_at = now
            self.outstanding[batch.seq] = batch
            if not self._send(batch, now):
                return

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        stats = self.spool.stats()
        return {
            "device_id": self.settings.device_id,
            "boot": self.boot_id,
            "pid": os.getpid(),
            "time_ms": int(self.wall_clock() * 1000),
            "connected": self.forwarder.connected,
            "transport": self.settings.transport,
            "clock_synced": self.clock.synced(),
            "counters": dict(self.counters),
            "sensors": {
                sid: {**state, "detectors": self.detectors[sid].get_state()}
                if sid in self.detectors
                else dict(state)
                for sid, state in self.sensor_state.items()
            },
            **stats,
        }

    def _publish_status(self) -> None:
        status = self.status()
        self.spool.set_meta({META_STATUS: status})
        online: dict[str, Any] = json.loads(protocol.encode_status("online", self.boot_id))
        online.update(
            {
                "dropped": status["dropped_total"],
                "spool": status["spool_readings"],
                "clock_synced": status["clock_synced"],
            }
        )
        self.forwarder.publish_status(json.dumps(online, separators=(",", ":")).encode())
        self.notifier.status(
            f"spool {status['spool_readings']} readings, {status['unacked_batches']} unacked, "
            f"dropped {status['dropped_total']}, "
            f"{'connected' if status['connected'] else 'DISCONNECTED'}"
        )
