"""The live alert stream: one ``LISTEN`` connection per collector instance fans alert changes
out to the Server-Sent-Events clients of that instance.

Alert changes are announced with ``NOTIFY`` inside the transaction that makes them, by whichever
instance makes them, so a client connected to instance B sees what instance A fired, and never
sees a change that rolled back.

A client's stream (:meth:`AlertStream.follow`) re-checks its authorization every so often and
ends once it no longer holds (logout, password change, account disabled), so an open connection
does not outlive the session it was opened with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from collector.alerts.lifecycle import CHANNEL
from collector.db.connection import connect

log = logging.getLogger(__name__)

EventFilter = Callable[[dict[str, Any]], bool]


class Keepalive:
    """Nothing happened for a while: the client should get a comment line."""


@dataclass(frozen=True)
class Ended:
    """The stream ends for this client, and why (said to the client before closing)."""

    reason: str


KEEPALIVE = Keepalive()


@dataclass(eq=False)
class Subscriber:
    loop: asyncio.AbstractEventLoop
    accepts: EventFilter
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=1000)
    )
    dropped: int = 0

    def offer(self, event: dict[str, Any]) -> None:
        # Runs on the event loop: a client that stops reading loses events, not the server.
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class AlertStream:
    """Listens on the alert channel on its own thread and hands events to subscribers."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-stream", daemon=True)
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:  # ends every open stream
            with contextlib.suppress(RuntimeError):  # its event loop may be gone already
                sub.loop.call_soon_threadsafe(sub.offer, None)  # type: ignore[arg-type]

    def subscribe(self, accepts: EventFilter) -> Subscriber:
        sub = Subscriber(asyncio.get_running_loop(), accepts)
        with self._lock:
            self._subscribers.add(sub)
        return sub

    async def follow(
        self,
        accepts: EventFilter,
        *,
        still_allowed: Callable[[], Awaitable[bool]],
        recheck_s: float,
        keepalive_s: float,
    ) -> AsyncIterator[dict[str, Any] | Keepalive | Ended]:
        """One client's stream: the events it accepts, :data:`KEEPALIVE` when quiet, and a last
        :class:`Ended` when the stream stops or ``still_allowed()`` says no (asked every
        ``recheck_s``). Subscribes when first iterated and unsubscribes however it ends."""
        loop = asyncio.get_running_loop()
        sub = self.subscribe(accepts)
        try:
            next_check = loop.time() + recheck_s
            next_keepalive = loop.time() + keepalive_s
            while True:
                now = loop.time()
                if now >= next_check:
                    if not await still_allowed():
                        yield Ended("session ended")
                        return
                    next_check = loop.time() + recheck_s
                if now >= next_keepalive:
                    yield KEEPALIVE
                    next_keepalive = loop.time() + keepalive_s
                timeout = max(0.0, min(next_check, next_keepalive) - loop.time())
                try:
                    event = await asyncio.wait_for(sub.queue.get(), timeout)
                except TimeoutError:
                    continue
                if event is None:
                    yield Ended("collector shutting down")
                    return
                yield event
        finally:
            self.unsubscribe(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                wanted = sub.accepts(event)
            except Exception:  # a bad filter must not stop the fan-out
                log.exception("stream filter failed")
                wanted = False
            if wanted:
                sub.loop.call_soon_threadsafe(sub.offer, event)

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                with connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = 0.2
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._dispatch(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("alert stream lost its database connection: %s", exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _dispatch(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("ignoring a malformed alert notification")
            return
        if isinstance(event, dict):
            self.publish(event)
