"""The one ingest pipeline every transport uses: decode → check identity → validate → queue for
group commit → acknowledge after commit (through the transport's ``on_done``)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import psycopg

from collector import metrics
from collector.config import Settings
from collector.ingest.registry import DeviceRegistry
from collector.ingest.validate import (
    EARLIEST_PLAUSIBLE_MS,
    SENTINELS_C,
    Limits,
    check_reading,
    check_time,
)
from collector.ingest.work import Outcome, Reject, Work
from collector.ingest.writer import GroupCommitWriter
from shared.decode import (
    BatchError,
    Event,
    Reading,
    RecordError,
    decode_object,
    parse_cbor,
    parse_payload,
)

log = logging.getLogger(__name__)

JSON = "json"
CBOR = "cbor"


class Overloaded(RuntimeError):
    """The commit queue is full; the sender should retry later."""


class Unavailable(Overloaded):
    """The database needed to check the sender cannot be reached; the sender should retry."""


class IngestPipeline:
    def __init__(
        self, settings: Settings, writer: GroupCommitWriter, registry: DeviceRegistry
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.registry = registry
        self.limits = Limits(
            min_valid_c=settings.min_valid_c,
            max_valid_c=settings.max_valid_c,
            max_future_skew_ms=settings.max_future_skew_s * 1000,
            max_age_ms=settings.max_age_days * 86_400_000,
        )

    def _raw(self, payload: bytes) -> bytes:
        """The payload as stored with a reject: its bytes as they came (``ingest_rejects.raw`` is
        bytea), up to ``reject_raw_max_bytes``; no copy when it is shorter."""
        raw = payload[: self.settings.reject_raw_max_bytes]
        return raw if type(raw) is bytes else bytes(raw)

    def prepare(
        self, payload: bytes, *, identity: str | None, transport: str, body_format: str = JSON
    ) -> Work:
        """Turn a payload into work for the writer; never raises for bad input (only
        :class:`Unavailable` when the database needed to check the sender is down)."""
        metrics.BATCHES.labels(transport).inc()
        try:
            return self._prepare(payload, identity, transport, body_format)
        except Unavailable:
            raise
        except Exception as exc:
            # Decoding bounds every field, so this is a gap in our checks; it still must not
            # reach the transport (a 500, a 5.00, an MQTT message never acknowledged): the batch
            # is refused with a reason and recorded like any other bad input.
            _log_content_failure(transport)
            return self._refused(
                payload, identity, transport, "malformed_batch", type(exc).__name__
            )

    def _prepare(
        self, payload: bytes, identity: str | None, transport: str, body_format: str
    ) -> Work:
        max_bytes = self.settings.max_payload_bytes
        try:
            if body_format == CBOR:
                obj = parse_cbor(payload, max_bytes=max_bytes)
            else:
                obj = parse_payload(payload, max_bytes=max_bytes)
            batch = decode_object(obj)
        except BatchError as exc:
            return self._refused(payload, identity, transport, exc.reason, exc.detail)

        outcome = Outcome(batch.device_id, batch.seq, batch.boot_id)
        if identity is not None and batch.device_id != identity:
            # A device may only speak for itself: attribute to the authenticated identity.
            return self._refused(
                payload,
                identity,
                transport,
                "device_mismatch",
                f"payload says {batch.device_id!r}",
                outcome=outcome,
            )
        try:
            allowed = self.registry.allowed(batch.device_id)
        except psycopg.Error as exc:
            raise Unavailable(str(exc).strip()) from None
        if not allowed:
            return self._refused(
                payload, batch.device_id, transport, "unknown_device", None, outcome=outcome
            )

        work = Work(transport=transport, outcome=outcome, raw=self._raw(payload))
        device = batch.device_id
        rejects = work.rejects
        for err in batch.errors:
            rejects.append(
                Reject(err.reason, device, f"{err.section}[{err.index}]", err.index, err.raw)
            )
        now_ms = int(time.time() * 1000)
        rows = work.rows
        append = rows.append
        limits = self.limits
        # The window and range in which a reading needs no closer look (check_reading decides
        # everything else); inlined because this loop runs for every reading ingested.
        earliest = max(now_ms - limits.max_age_ms, EARLIEST_PLAUSIBLE_MS)
        latest = now_ms + limits.max_future_skew_ms
        low, high = limits.min_valid_c, limits.max_valid_c
        for i, reading in enumerate(batch.readings):
            sensor_id, t, value, quality, _ = reading
            if (
                earliest <= t <= latest
                and value is not None
                and low <= value <= high
                and value not in SENTINELS_C
            ):
                append((device, sensor_id, t, value, quality, None))
                continue
            row, reason = check_reading(device, reading, now_ms, limits)
            if row is not None:
                append(row)
                if row[5] is not None:
                    metrics.PROBE_FAULTS.labels(row[5]).inc()
            else:
                index = _record_index(batch.errors, "r", i)
                rejects.append(
                    Reject(reason or "invalid", device, f"r[{index}]", index, _reading_raw(reading))
                )
        # Events are stored with their times too: the same clock checks as readings.
        events = work.events
        for i, event in enumerate(batch.events):
            clock = check_time(event.time_ms, now_ms, limits)
            if clock is None:
                events.append(event)
            else:
                index = _record_index(batch.errors, "ev", i)
                rejects.append(Reject(clock, device, f"ev[{index}]", index, _event_raw(event)))
        return work

    def _refused(
        self,
        payload: bytes,
        device_id: str | None,
        transport: str,
        reason: str,
        detail: str | None,
        *,
        outcome: Outcome | None = None,
    ) -> Work:
        # The writer leaves the devices table alone for a batch with an error: a refused batch
        # changes nothing about the device it names, nor creates one.
        outcome = outcome or Outcome(device_id, None, None)
        outcome.error = reason
        raw = self._raw(payload)
        return Work(
            transport=transport,
            outcome=outcome,
            rejects=[Reject(reason, device_id, detail, None, raw)],
            raw=raw,
        )

    def submit(
        self,
        payload: bytes,
        *,
        identity: str | None,
        transport: str,
        on_done: Callable[[Outcome], None],
        body_format: str = JSON,
        block: bool = True,
    ) -> None:
        """Validate and queue a payload; ``on_done`` runs on the writer thread after commit.

        With ``block`` (MQTT, on its intake thread, never paho's network thread), waits out a
        database outage instead of raising: the message stays unacknowledged at the broker
        meanwhile, so nothing is lost either way.
        """
        delay = 0.1
        while True:
            try:
                work = self.prepare(
                    payload, identity=identity, transport=transport, body_format=body_format
                )
                break
            except Unavailable as exc:
                if not block:
                    raise
                log.warning("cannot check the sender, retrying in %.1fs: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        work.on_done = on_done
        if not self.writer.submit(work, block=block):
            raise Overloaded("ingest queue full")

    async def submit_async(
        self, payload: bytes, *, identity: str | None, transport: str, body_format: str = JSON
    ) -> Outcome:
        """Validate, queue and wait for the commit; for asyncio transports (CoAP, HTTP)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def done(outcome: Outcome) -> None:
            loop.call_soon_threadsafe(_resolve, future, outcome)

        self.submit(
            payload,
            identity=identity,
            transport=transport,
            on_done=done,
            body_format=body_format,
            block=False,
        )
        return await future


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


def _reading_raw(reading: Reading) -> str:
    return json.dumps(
        {
            "sensor_id": reading.sensor_id,
            "time_ms": reading.time_ms,
            "value": reading.value,
            "quality": reading.quality,
            "fault": reading.fault,
        }
    )


def _event_raw(event: Event) -> str:
    return json.dumps(
        {
            "sensor_id": event.sensor_id,
            "time_ms": event.time_ms,
            "kind": event.kind,
            "value": event.value,
            "detail": event.detail,
        }
    )


def _record_index(errors: list[RecordError], section: str, kept: int) -> int:
    """The position in the batch of its ``kept``-th decoded record of ``section`` (the records
    refused while decoding are not among the decoded ones)."""
    index = kept
    for refused in sorted(e.index for e in errors if e.section == section):
        if refused > index:
            break
        index += 1
    return index


# A content failure is logged with its traceback at most once a minute: a device sending the
# same payload in a loop must not fill the log.
_CONTENT_FAILURE_LOG_INTERVAL_S = 60.0
_content_failure_logged_at = -_CONTENT_FAILURE_LOG_INTERVAL_S


def _log_content_failure(transport: str) -> None:
    global _content_failure_logged_at
    now = time.monotonic()
    if now - _content_failure_logged_at >= _CONTENT_FAILURE_LOG_INTERVAL_S:
        _content_failure_logged_at = now
        log.exception("refused a %s payload our checks did not expect", transport)
    else:
        log.warning("refused a %s payload our checks did not expect", transport)
