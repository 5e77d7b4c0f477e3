"""A cap on work running at once, with a bounded queue and a priority lane.

Logins use two: one on password hashes (argon2 takes 64 MiB and a core for a good fraction of a
second per check; unbounded, a burst of logins made the collector grow by a gigabyte) and one on
the database connections they use. At most ``concurrent`` run. Logins from an address their user
logged in from before (the throttle's *known* pairs) go first, are never refused for the queue,
and have one slot to themselves (when there are two or more), so they never wait for a flood's
work to finish; other logins take one of ``queue`` places and wait up to ``wait_s``, and beyond
that are refused at once with :class:`Busy` (the API answers 503 with ``Retry-After``). A flood
then costs neither memory nor threads, and does not keep the owner waiting behind it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Busy(RuntimeError):
    """No room now; try again in ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many logins in progress")
        self.retry_after_s = retry_after_s


class PriorityGate:
    """``slot(priority=...)`` around the work; ``on_change(running, peak)`` sees every change."""

    def __init__(
        self,
        concurrent: int,
        queue: int,
        wait_s: float,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        self.concurrent = concurrent
        self._ordinary = concurrent - 1 if concurrent >= 2 else concurrent  # one kept back
        self.queue = queue
        self.wait_s = wait_s
        self._on_change = on_change or (lambda running, peak: None)
        self._cond = threading.Condition()
        self._waiting = 0
        self._priority_waiting = 0
        self.running = 0
        self.peak = 0  # the most that ever ran at once

    @property
    def waiting(self) -> tuple[int, int]:
        """Work waiting for a slot: (ordinary, priority)."""
        return self._waiting, self._priority_waiting

    def has_room(self) -> bool:
        """Whether ordinary work would get a slot or a queue place now."""
        with self._cond:
            return self._free(False) or self._waiting < self.queue

    @contextmanager
    def slot(self, *, priority: bool = False) -> Iterator[None]:
        self._acquire(priority)
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self._on_change(self.running, self.peak)
                self._cond.notify_all()

    def _acquire(self, priority: bool) -> None:
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            if not priority and not self._free(False) and self._waiting >= self.queue:
                raise Busy(1.0)
            if priority:
                self._priority_waiting += 1
            else:
                self._waiting += 1
            try:
                # Priority first: ordinary work waits while any priority work does.
                while not (self._free(priority) and (priority or self._priority_waiting == 0)):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Busy(max(1.0, self.wait_s))
                    self._cond.wait(remaining)
                self.running += 1
                self.peak = max(self.peak, self.running)
                self._on_change(self.running, self.peak)
            finally:
                if priority:
                    self._priority_waiting -= 1
                else:
                    self._waiting -= 1

    def _free(self, priority: bool) -> bool:
        return self.running < (self.concurrent if priority else self._ordinary)
