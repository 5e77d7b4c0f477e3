"""The gates in front of password hashes and login connections: never more than the cap at
once, a bounded queue that refuses the rest at once, and logins from a known address served
before the queue."""

from __future__ import annotations

import threading
import time

import pytest

from collector.auth.gate import Busy, PriorityGate


def test_beyond_the_running_and_queued_logins_the_answer_is_busy_at_once() -> None:
    limiter = PriorityGate(concurrent=1, queue=1, wait_s=30)
    release = threading.Event()
    queued = threading.Event()

    def hold() -> None:
        with limiter.slot():
            release.wait(10)

    def wait_in_queue() -> None:
        queued.set()
        with limiter.slot():
            pass

    holder = threading.Thread(target=hold)
    holder.start()
    _until(lambda: limiter.running == 1)
    waiter = threading.Thread(target=wait_in_queue)
    waiter.start()
    queued.wait(10)
    _until(lambda: limiter.waiting == (1, 0))
    assert not limiter.has_room()
    with pytest.raises(Busy) as refused, limiter.slot():
        pass
    assert refused.value.retry_after_s >= 1
    release.set()
    holder.join(10)
    waiter.join(10)
    assert limiter.peak == 1 and limiter.running == 0


def test_a_known_login_goes_before_the_queued_ones() -> None:
    limiter = PriorityGate(concurrent=1, queue=8, wait_s=30)
    release = threading.Event()
    order: list[str] = []

    def hold() -> None:
        with limiter.slot():
            release.wait(10)

    def login(name: str, priority: bool) -> None:
        with limiter.slot(priority=priority):
            order.append(name)

    threads = [threading.Thread(target=hold)]
    threads[0].start()
    _until(lambda: limiter.running == 1)
    for i in range(4):
        threads.append(threading.Thread(target=login, args=(f"queued-{i}", False)))
        threads[-1].start()
    _until(lambda: limiter.waiting == (4, 0))
    threads.append(threading.Thread(target=login, args=("owner", True)))
    threads[-1].start()
    _until(lambda: limiter.waiting == (4, 1))
    release.set()
    for t in threads:
        t.join(10)
    assert order[0] == "owner" and len(order) == 5
    assert limiter.peak == 1


def test_concurrent_hashes_never_exceed_the_cap() -> None:
    limiter = PriorityGate(concurrent=3, queue=100, wait_s=30)
    seen: list[int] = []

    def work() -> None:
        with limiter.slot():
            seen.append(limiter.running)
            time.sleep(0.001)

    threads = [threading.Thread(target=work) for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(seen) == 60 and max(seen) <= 3 and limiter.peak <= 3


def _until(condition: object) -> None:
    assert callable(condition)
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


def test_one_slot_is_kept_for_known_logins() -> None:
    gate = PriorityGate(concurrent=2, queue=8, wait_s=30)
    release = threading.Event()

    def hold() -> None:
        with gate.slot():
            release.wait(10)

    flood = [threading.Thread(target=hold) for _ in range(3)]
    for t in flood:
        t.start()
    _until(lambda: gate.running == 1 and gate.waiting == (2, 0))  # ordinary work gets one
    with gate.slot(priority=True):  # the owner does not wait for any of it
        assert gate.running == 2
    release.set()
    for t in flood:
        t.join(10)
    assert gate.peak == 2
