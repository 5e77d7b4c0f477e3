"""Real peers for the notification tests: a webhook receiver (``http.server`` on a thread), an
SMTP server (aiosmtpd), and an SSE client reading the collector's live stream."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from tests.support.net import free_port


@dataclass
class Hook:
    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Answers ``fail_first`` requests with 500, then 204; records every request."""

    fail_first: int = 0
    requests: list[Hook] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(Hook(time.monotonic(), dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Collect:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        self.handler = _Collect()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def messages(self) -> list[Message]:
        return self.handler.messages

    def close(self) -> None:
        self.controller.stop()


class SseClient:
    """Reads ``GET /api/v1/alerts/stream`` on a thread and keeps every ``alert`` event."""

    def __init__(self, base_url: str, token: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.received_at: list[float] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10, read=None),
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.connected.wait(10)

    def _run(self) -> None:
        with self._client.stream("GET", "/api/v1/alerts/stream") as resp:
            self.status = resp.status_code
            self.connected.set()
            event = None
            for line in resp.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "alert":
                    self.events.append(json.loads(line[5:]))
                    self.received_at.append(time.monotonic())
                elif not line:
                    event = None

    def close(self) -> None:
        self._stop.set()
        self._client.close()
