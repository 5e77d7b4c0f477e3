"""Sessions end: a password change or reset, disabling an account and logout stop the tokens
they should (and only those), and an open alert stream closes once its session ended, while a
stream whose session runs keeps delivering."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from tests.collector.api.alerting import household, rule, send
from tests.collector.auth.people import PEOPLE_SETTINGS
from tests.collector.auth.stack import Stack
from tests.support.net import wait_for

RECHECK_S = float(PEOPLE_SETTINGS["stream_recheck_s"])


@pytest.fixture
def stack(people_stack: Stack) -> Stack:
    return people_stack


@dataclass
class Person:
    user_id: int
    name: str
    password: str


def person(stack: Stack, home_ids: list[int] | None = None) -> Person:
    name, password = f"person-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    with stack.admin() as http:
        resp = http.post(
            "/api/v1/users",
            json={
                "username": name,
                "password": password,
                "role": "homeowner",
                "home_ids": home_ids or [],
            },
        )
    assert resp.status_code == 201, resp.text
    return Person(resp.json()["user_id"], name, password)


def works(stack: Stack, token: str) -> bool:
    with stack.client(token) as http:
        code = http.get("/api/v1/auth/me").status_code
    assert code in (200, 401)
    return code == 200


def test_a_password_change_ends_every_older_session(stack: Stack) -> None:
    p = person(stack)
    first, second = stack.login(p.name, p.password), stack.login(p.name, p.password)
    with stack.client(first) as http:
        key = http.post("/api/v1/auth/api-keys", json={"name": "script"}).json()["key"]
        new_password = secrets.token_urlsafe(16)
        resp = http.patch(
            "/api/v1/auth/me",
            json={"current_password": p.password, "new_password": new_password},
        )
    assert resp.status_code == 200, resp.text
    assert not works(stack, first) and not works(stack, second)
    assert works(stack, key)  # API keys are not sessions: they are revoked one by one
    assert works(stack, stack.login(p.name, new_password))


def test_an_admin_reset_or_disabling_ends_sessions_for_good(stack: Stack) -> None:
    p = person(stack)
    token = stack.login(p.name, p.password)
    new_password = secrets.token_urlsafe(16)
    with stack.admin() as admin:

        def change(**body: object) -> None:
            assert admin.patch(f"/api/v1/users/{p.user_id}", json=body).status_code == 200

        change(password=new_password)
        assert not works(stack, token)
        token = stack.login(p.name, new_password)
        change(disabled=True)
        assert not works(stack, token)
        change(disabled=False)
    assert not works(stack, token)  # enabled again, but that session stays over
    assert works(stack, stack.login(p.name, new_password))


def test_logout_ends_the_token_it_was_sent_with_and_only_that(stack: Stack) -> None:
    p = person(stack)
    phone, laptop = stack.login(p.name, p.password), stack.login(p.name, p.password)
    with stack.client(phone) as http:
        assert http.post("/api/v1/auth/logout").status_code == 204
        assert http.post("/api/v1/auth/logout").status_code == 401
    assert not works(stack, phone) and works(stack, laptop)
    tablet = stack.login(p.name, p.password)
    with stack.client(laptop) as http:
        assert http.post("/api/v1/auth/logout", params={"everywhere": "true"}).status_code == 204
    assert not works(stack, laptop) and not works(stack, tablet)
    assert works(stack, stack.login(p.name, p.password))
    with stack.admin() as admin:  # an API key is revoked, not logged out
        assert admin.post("/api/v1/auth/logout").status_code == 409
        actions = [e["action"] for e in admin.get("/api/v1/audit").json() if e["target"] == p.name]
    assert actions.count("logout") == 2


@dataclass
class Stream:
    """An SSE client on a thread: the events it got, and whether the server closed it."""

    lines: list[str] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    status: int = 0

    def events(self, kind: str) -> list[dict[str, object]]:
        out, current = [], None
        for line in list(self.lines):
            if line.startswith("event:"):
                current = line[6:].strip()
            elif line.startswith("data:") and current == kind:
                out.append(json.loads(line[5:]))
        return out


def open_stream(stack: Stack, token: str) -> Stream:
    stream = Stream()
    started = threading.Event()

    def run() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        timeout = httpx.Timeout(10, read=30)
        try:
            with (
                httpx.Client(base_url=stack.url, headers=headers, timeout=timeout) as http,
                http.stream("GET", "/api/v1/alerts/stream") as resp,
            ):
                stream.status = resp.status_code
                started.set()
                for line in resp.iter_lines():
                    stream.lines.append(line)
        finally:
            started.set()
            stream.closed.set()

    threading.Thread(target=run, daemon=True).start()
    started.wait(10)
    assert stream.status == 200
    wait_for(lambda: stream.lines, 10, what="the stream's first line")
    return stream


def _disable(stack: Stack, p: Person, token: str) -> None:
    with stack.admin() as admin:
        assert admin.patch(f"/api/v1/users/{p.user_id}", json={"disabled": True}).status_code == 200


def _logout(stack: Stack, p: Person, token: str) -> None:
    with stack.client(token) as http:
        assert http.post("/api/v1/auth/logout").status_code == 204


def _new_password(stack: Stack, p: Person, token: str) -> None:
    with stack.admin() as admin:
        body = {"password": secrets.token_urlsafe(16)}
        assert admin.patch(f"/api/v1/users/{p.user_id}", json=body).status_code == 200


def _home_taken_away(stack: Stack, p: Person, token: str) -> None:
    with stack.admin() as admin:
        assert admin.patch(f"/api/v1/users/{p.user_id}", json={"home_ids": []}).status_code == 200


@pytest.mark.parametrize("end", [_disable, _logout, _new_password, _home_taken_away])
def test_an_open_alert_stream_closes_when_its_session_ends(
    stack: Stack, end: Callable[[Stack, Person, str], None]
) -> None:
    home = household(stack, "Stream")
    p = person(stack, [home.home_id])
    token = stack.login(p.name, p.password)
    stream = open_stream(stack, token)
    with stack.admin() as admin:
        rule(admin, "stream warm", {"above_c": 8, "for_s": 0}, device_id=home.device_id)
    time.sleep(5 * RECHECK_S)  # several re-checks pass while the session runs
    send(stack, home.device_id, home.token, 12.0)
    wait_for(lambda: stream.events("alert"), 20, what="the alert on the open stream")
    assert not stream.closed.is_set()
    end(stack, p, token)
    assert stream.closed.wait(20), "the stream stayed open after its session ended"
    assert stream.events("end") == [{"reason": "session ended"}]
