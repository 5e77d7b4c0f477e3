"""Login throttling on a real PostgreSQL with a fake clock: the pause schedule, the owner's
known address, NAT-friendly address counters, forgetting, no typed text stored, and no race
between concurrent attempts. The same code serves the API (tests/collector/auth/test_login.py
drives it through a running collector)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic import command
from pydantic import SecretStr
from sqlalchemy import Engine

from collector.auth.throttle import Attempt, Policy, Throttle, normalize_address
from collector.config import Settings
from collector.db import migrate
from collector.db.connection import make_engine
from tests.support.database import create_database, drop_database

SECRET = "s" * 48
POLICY = Policy(user_free=5, address_free=20, base_s=1.0, max_s=60.0, forget_s=900.0)
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    url = create_database()
    migrate.upgrade(Settings(database_url=url, secret_key=SecretStr(SECRET)))
    yield url
    drop_database(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE login_failures")
    eng = make_engine(database_url, pool_size=20)
    yield eng
    eng.dispose()


class Clock:
    """The throttle's idea of now, moved by the test."""

    def __init__(self) -> None:
        self.now = T0

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def fail(throttle: Throttle, engine: Engine, clock: Clock, user: str, address: str) -> Attempt:
    """One attempt with a wrong password; returns what the throttle said."""
    with engine.connect() as conn:
        attempt = throttle.attempt(conn, username=user, address=address, now=clock.now)
        if attempt.allowed:
            throttle.failed(conn, attempt, now=clock.now)
    return attempt


def succeed(throttle: Throttle, engine: Engine, clock: Clock, user: str, address: str) -> Attempt:
    with engine.connect() as conn:
        attempt = throttle.attempt(conn, username=user, address=address, now=clock.now)
        if attempt.allowed:
            throttle.succeeded(conn, attempt, now=clock.now)
    return attempt


def test_the_pause_doubles_after_the_free_failures_and_is_capped() -> None:
    assert [POLICY.delay_s(n, free=5) for n in range(1, 13)] == [
        0,
        0,
        0,
        0,
        1,
        2,
        4,
        8,
        16,
        32,
        60,
        60,
    ]
    assert POLICY.delay_s(10**9, free=5) == 60


def test_attempts_during_a_pause_are_refused_without_extending_it(engine: Engine) -> None:
    throttle, clock = Throttle(SECRET, POLICY), Clock()
    for _ in range(5):
        assert fail(throttle, engine, clock, "alice", "198.51.100.7").allowed
    refused = fail(throttle, engine, clock, "alice", "198.51.100.7")
    assert not refused.allowed and 0 < refused.retry_after_s <= 1
    for _ in range(50):  # hammering during the pause changes nothing
        assert not fail(throttle, engine, clock, "alice", "198.51.100.7").allowed
    clock.advance(1.01)
    assert fail(throttle, engine, clock, "alice", "198.51.100.7").allowed  # the 6th failure
    refused = fail(throttle, engine, clock, "alice", "198.51.100.7")
    assert not refused.allowed and 1 < refused.retry_after_s <= 2


def test_a_correct_password_after_the_pause_always_works(engine: Engine) -> None:
    throttle, clock = Throttle(SECRET, POLICY), Clock()
    failures = 0
    while failures < 100:  # a long attack from ever new addresses, each guess at its earliest
        attempt = fail(throttle, engine, clock, "alice", f"203.0.113.{failures}")
        if attempt.allowed:
            failures += 1
        else:
            clock.advance(attempt.retry_after_s + 0.01)
    waiting = succeed(throttle, engine, clock, "alice", "192.0.2.1")
    assert not waiting.allowed and waiting.retry_after_s <= POLICY.max_s
    clock.advance(waiting.retry_after_s + 0.01)
    assert succeed(throttle, engine, clock, "alice", "192.0.2.1").allowed


def test_the_owners_known_address_is_not_slowed_by_an_attack_elsewhere(engine: Engine) -> None:
    throttle, clock = Throttle(SECRET, POLICY), Clock()
    assert succeed(throttle, engine, clock, "alice", "192.0.2.1").allowed  # her usual address
    for i in range(100):
        fail(throttle, engine, clock, "alice", f"203.0.113.{i}")
    assert not fail(throttle, engine, clock, "alice", "203.0.113.200").allowed  # slowed
    # From her address: no pause at all, however many failures the name has elsewhere.
    assert succeed(throttle, engine, clock, "alice", "192.0.2.1").allowed
    # Her own typos there still count, against that pair only.
    for _ in range(5):
        assert fail(throttle, engine, clock, "alice", "192.0.2.1").allowed
    assert not fail(throttle, engine, clock, "alice", "192.0.2.1").allowed


def test_an_address_gets_more_free_failures_than_a_name(engine: Engine) -> None:
    throttle, clock = Throttle(SECRET, POLICY), Clock()
    # Twenty people behind one NAT each mistype once: nobody is slowed.
    for i in range(20):
        assert fail(throttle, engine, clock, f"user{i}", "198.51.100.1").allowed
    # A spray of names from that address is then slowed, whatever the name.
    refused = fail(throttle, engine, clock, "someone-else", "198.51.100.1")
    assert not refused.allowed
    # A success from there gives its own count back, so the NAT's people keep logging in.
    clock.advance(refused.retry_after_s + 0.01)
    assert succeed(throttle, engine, clock, "user0", "198.51.100.1").allowed
    with engine.connect() as conn:
        failures = conn.exec_driver_sql(
            "SELECT failures FROM login_failures WHERE scope = 'address'"
        ).scalar_one()
    assert failures == 20


def test_an_attempt_without_room_to_check_its_password_counts_nothing(engine: Engine) -> None:
    throttle, clock = Throttle(SECRET, POLICY), Clock()
    with engine.connect() as conn:
        for _ in range(50):  # a flood while every hash slot is taken
            refused = throttle.attempt(
                conn, username="dave", address="203.0.113.9", now=clock.now, room=lambda k: False
            )
            assert refused.busy and not refused.allowed
    for _ in range(POLICY.user_free):  # the name's free failures are all still there
        assert fail(throttle, engine, clock, "dave", "203.0.113.9").allowed


def test_counters_forget_after_a_quiet_period(engine: Engine) -> None:
    throttle, clock = Throttle(SECRET, POLICY), Clock()
    for _ in range(8):
        fail(throttle, engine, clock, "bob", "198.51.100.9")
        clock.advance(40)
    clock.advance(POLICY.forget_s + 1)
    for _ in range(5):  # the free failures again
        assert fail(throttle, engine, clock, "bob", "198.51.100.9").allowed


def test_ipv6_addresses_count_by_slash_64() -> None:
    assert normalize_address("2001:db8:1:2:aaaa::1") == normalize_address("2001:db8:1:2:ffff::9")
    assert normalize_address("2001:db8:1:2::1") != normalize_address("2001:db8:1:3::1")
    assert normalize_address("::ffff:198.51.100.4") == "198.51.100.4"
    assert normalize_address("198.51.100.4") == "198.51.100.4"


def test_what_was_typed_is_never_stored(engine: Engine, database_url: str) -> None:
    throttle, clock = Throttle(SECRET, POLICY), Clock()
    typed = "my-Secret-passw0rd-typed-as-a-name"
    fail(throttle, engine, clock, typed, "198.51.100.23")
    with psycopg.connect(database_url) as conn:
        dump = str(conn.execute("SELECT * FROM login_failures").fetchall())
    assert typed not in dump and "198.51.100.23" not in dump
    # Keyed with the server secret: another installation's keys say nothing about these.
    other = Throttle("o" * 48, POLICY)
    assert other._keys(typed, "198.51.100.23") != throttle._keys(typed, "198.51.100.23")


def test_concurrent_attempts_cannot_pass_the_limit_together(engine: Engine) -> None:
    throttle, clock = Throttle(SECRET, POLICY), Clock()
    start = threading.Barrier(20)
    allowed: list[bool] = []

    def guess(i: int) -> None:
        with engine.connect() as conn:
            start.wait()
            attempt = throttle.attempt(
                conn, username="carol", address=f"203.0.113.{i}", now=clock.now
            )
            allowed.append(attempt.allowed)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Exactly the free failures plus the one that starts the first pause: each attempt was
    # counted before any password was checked.
    assert allowed.count(True) == POLICY.user_free


def test_the_migration_drops_what_was_typed_and_downgrades_cleanly() -> None:
    url = create_database()
    try:
        cfg = migrate.alembic_config(url)
        command.upgrade(cfg, "0007")
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO login_failures (username, address) VALUES ('typed-secret', '::1')"
            )
        command.upgrade(cfg, "0008")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM login_failures").fetchone() == (0,)
            conn.execute(
                "INSERT INTO users (username, password_hash, role) VALUES ('u', 'h1', 'admin')"
            )
            conn.execute("UPDATE users SET role = 'technician'")  # not a session matter
            assert conn.execute("SELECT session_generation FROM users").fetchone() == (1,)
            conn.execute("UPDATE users SET password_hash = 'h2'")
            conn.execute("UPDATE users SET disabled = true")
            conn.execute("UPDATE users SET disabled = false")
            assert conn.execute("SELECT session_generation FROM users").fetchone() == (3,)
        command.downgrade(cfg, "0007")
        command.upgrade(cfg, "0008")
    finally:
        drop_database(url)
