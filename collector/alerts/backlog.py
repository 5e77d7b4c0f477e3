"""Committed work waiting for evaluation: bounded, kept per device and served per home.

The writer's threads put committed groups in; the engine thread takes one round at a time. A
round gives every home with waiting work a budget of rule evaluations (deficit round robin: what
a home overspends is taken from its next round), so a home with a huge backlog or expensive
rules is served in slices while every other home is served in every round. Work of one device is
taken in commit order and split only at a measurement-time boundary, so no reading of a device is
evaluated after a later one of the same sensor (the engine would count it late and skip it).

When more samples wait than the bound, the oldest work of the home with the most waiting samples
is dropped (shed): its readings stay stored, they are just not fed to the rules.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from collector.ingest.work import Work

log = logging.getLogger(__name__)

SHED = Counter(
    "thermowatch_alert_shed_total",
    "Committed samples (readings and edge events) dropped before evaluation, by reason",
    ["reason"],
)
WAITING = Gauge("thermowatch_alert_backlog_samples", "Committed samples waiting for evaluation")

SHED_LOG_INTERVAL_S = 60.0  # one warning per interval, however much is shed


def device_of(work: Work) -> str | None:
    if work.outcome.device_id is not None:
        return work.outcome.device_id
    return work.rows[0][0] if work.rows else None


def samples_in(work: Work) -> int:
    # Events are only evaluated for a batch whose device is known (see AlertEngine.process).
    return len(work.rows) + (len(work.events) if work.outcome.device_id is not None else 0)


def split_work(work: Work, count: int) -> tuple[Work, Work | None]:
    """The samples of ``work`` up to a measurement time, about ``count`` of them, and the rest.

    Samples sharing the last time taken go with it, so a reading and its edge event (same time)
    are never evaluated in different rounds.
    """
    times = sorted([r[2] for r in work.rows] + [e.time_ms for e in work.events])
    if count >= len(times):
        return work, None
    cut = times[max(0, count - 1)]
    head_rows = [r for r in work.rows if r[2] <= cut]
    head_events = [e for e in work.events if e.time_ms <= cut]
    rest_rows = [r for r in work.rows if r[2] > cut]
    rest_events = [e for e in work.events if e.time_ms > cut]
    if not rest_rows and not rest_events:
        return work, None
    head = Work(work.transport, work.outcome, rows=head_rows, events=head_events)
    rest = Work(work.transport, work.outcome, rows=rest_rows, events=rest_events)
    return head, rest


@dataclass(slots=True)
class _Item:
    seq: int  # commit order, across devices
    work: Work
    samples: int


@dataclass(slots=True)
class _Lane:
    """One device's waiting work, in commit order."""

    items: deque[_Item]
    samples: int = 0


class Backlog:
    """See the module docstring. ``home_of(device_id)`` names the lane a device is served in
    (its home); it is called with the lock held, so it must not wait for anything."""

    def __init__(
        self,
        *,
        max_samples: int,
        home_of: Callable[[str], Hashable],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_samples = max(1, max_samples)
        self._home_of = home_of
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._devices: dict[str, _Lane] = {}
        self._deficit: dict[Hashable, float] = {}
        self._seq = itertools.count()
        self._samples = 0
        self._shed_unlogged = 0
        self._shed_homes: dict[Hashable, int] = {}
        self._shed_logged_at: float | None = None

    # -- writer side -----------------------------------------------------------------------------

    def put(self, group: list[Work]) -> int:
        """Queue a committed group; returns how many samples had to be shed to make room."""
        with self._lock:
            for work in group:
                device, samples = device_of(work), samples_in(work)
                if device is None or samples == 0:
                    continue
                lane = self._devices.get(device)
                if lane is None:
                    lane = self._devices[device] = _Lane(deque())
                lane.items.append(_Item(next(self._seq), work, samples))
                lane.samples += samples
                self._samples += samples
            shed = self._shed_over_bound() if self._samples > self.max_samples else 0
            WAITING.set(self._samples)
            self._ready.notify_all()
        return shed

    def _shed_over_bound(self) -> int:
        homes = self._by_home()
        waiting = {
            home: sum(self._devices[d].samples for d in devices) for home, devices in homes.items()
        }
        shed = 0
        while self._samples > self.max_samples:
            home = max(waiting, key=lambda h: waiting[h])
            item, device = self._oldest(homes[home])
            if item is None:  # nothing left to attribute (cannot happen while samples wait)
                break
            self._pop(device)
            waiting[home] -= item.samples
            shed += item.samples
            self._shed_homes[home] = self._shed_homes.get(home, 0) + item.samples
        SHED.labels("queue_full").inc(shed)
        self._shed_unlogged += shed
        now = self._clock()
        if self._shed_logged_at is None or now - self._shed_logged_at >= SHED_LOG_INTERVAL_S:
            heaviest = max(self._shed_homes, key=lambda h: self._shed_homes[h])
            log.warning(
                "alert evaluation cannot keep up: shed %d committed samples (most from home %s) "
                "to keep the backlog at %d; their readings are stored but not evaluated",
                self._shed_unlogged,
                heaviest,
                self.max_samples,
            )
            self._shed_logged_at = now
            self._shed_unlogged = 0
            self._shed_homes.clear()
        return shed

    # -- engine side -----------------------------------------------------------------------------

    @property
    def samples(self) -> int:
        return self._samples

    def waiting_by_home(self) -> dict[Hashable, int]:
        with self._lock:
            return {
                home: sum(self._devices[d].samples for d in devices)
                for home, devices in self._by_home().items()
            }

    def devices(self) -> set[str]:
        with self._lock:
            return set(self._devices)

    def wait(self, timeout_s: float) -> bool:
        """Wait until work is queued; False if none came within the timeout."""
        with self._lock:
            return self._ready.wait_for(lambda: self._samples > 0, timeout_s)

    def take(self, quantum: float, cost: Callable[[Work], float]) -> list[Work]:
        """One round: from every home with waiting work, oldest first, up to ``quantum`` of
        ``cost`` plus what it saved from earlier rounds. ``cost`` must not wait for anything."""
        taken: list[Work] = []
        with self._lock:
            homes = self._by_home()
            # A home without waiting work keeps no credit (it would let a burst skip the line).
            self._deficit = {h: d for h, d in self._deficit.items() if h in homes}
            for home in homes:
                budget = self._deficit.get(home, 0.0) + quantum
                while budget > 0:
                    item, device = self._oldest(homes[home])
                    if item is None:
                        budget = 0.0  # emptied: no credit carried over
                        break
                    spent = cost(item.work)
                    if spent > budget and item.samples > 1:
                        want = max(1, int(item.samples * budget / spent))
                        head, rest = split_work(item.work, want)
                        if rest is not None:
                            done = samples_in(head)
                            spent = spent * done / item.samples
                            item.work, item.samples = rest, item.samples - done
                            self._devices[device].samples -= done
                            self._samples -= done
                            taken.append(head)
                            budget -= spent
                            break  # the rest waits at the head of its device
                    self._pop(device)
                    taken.append(item.work)
                    budget -= spent
                self._deficit[home] = budget
            WAITING.set(self._samples)
        return taken

    def drop_all(self, reason: str) -> int:
        """Forget everything waiting (shutdown); returns the samples dropped."""
        with self._lock:
            dropped, self._samples = self._samples, 0
            self._devices.clear()
            self._deficit.clear()
            WAITING.set(0)
        if dropped:
            SHED.labels(reason).inc(dropped)
        return dropped

    # -- helpers (lock held) ---------------------------------------------------------------------

    def _by_home(self) -> dict[Hashable, list[str]]:
        homes: dict[Hashable, list[str]] = {}
        for device in self._devices:
            homes.setdefault(self._home_of(device), []).append(device)
        return homes

    def _oldest(self, devices: list[str]) -> tuple[_Item | None, str]:
        """The item committed first among these devices' waiting work."""
        best: _Item | None = None
        best_device = ""
        for device in devices:
            lane = self._devices.get(device)
            if lane is not None and (best is None or lane.items[0].seq < best.seq):
                best, best_device = lane.items[0], device
        return best, best_device

    def _pop(self, device: str) -> None:
        lane = self._devices[device]
        item = lane.items.popleft()
        lane.samples -= item.samples
        self._samples -= item.samples
        if not lane.items:
            del self._devices[device]
