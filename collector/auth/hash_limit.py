"""A cap on password hashes running at once on one collector instance.

argon2 takes 64 MiB and a core for a good fraction of a second per check; unbounded, a burst of
logins made the collector grow by a gigabyte. At most ``concurrent`` checks run, ``queue`` more
wait (up to ``wait_s``), and anything beyond is refused at once with :class:`Busy` (the API
answers 503 with ``Retry-After``), so a flood costs neither memory nor worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from collector import metrics


class Busy(RuntimeError):
    """No room to check a password now; try again in ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many password checks in progress")
        self.retry_after_s = retry_after_s


class HashLimiter:
    """``admit()`` around the whole login (queue place), ``slot()`` around the hash itself."""

    def __init__(self, concurrent: int, queue: int, wait_s: float) -> None:
        self.concurrent = concurrent
        self.capacity = concurrent + queue
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(concurrent)
        self._lock = threading.Lock()
        self._admitted = 0
        self.running = 0
        self.peak = 0  # the most hashes that ever ran at once (exported as a metric)

    @contextmanager
    def admit(self) -> Iterator[None]:
        with self._lock:
            if self._admitted >= self.capacity:
                raise Busy(1.0)
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.wait_s):
            raise Busy(max(1.0, self.wait_s))
        try:
            with self._lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
                metrics.LOGIN_HASHES_RUNNING.set(self.running)
                metrics.LOGIN_HASHES_PEAK.set(self.peak)
            yield
        finally:
            with self._lock:
                self.running -= 1
                metrics.LOGIN_HASHES_RUNNING.set(self.running)
            self._slots.release()
