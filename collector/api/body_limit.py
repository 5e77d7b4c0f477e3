"""A request-body limit in front of every route, enforced while the body is read.

Starlette reads a body whole when a route asks for it, so without this a 64 MiB POST to the
unauthenticated login costs hundreds of megabytes before any check runs. This ASGI middleware
counts bytes as they arrive and stops the request once it is over the limit for its path: at
most one chunk beyond the limit is ever held.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector import metrics


class BodyTooLarge(HTTPException):
    """413, raised from ``receive``; ``prefix`` is what arrived before the limit was passed,
    so the ingest route can still record the refused batch."""

    def __init__(self, limit: int, prefix: bytes) -> None:
        super().__init__(status_code=413, detail=f"body larger than {limit} bytes")
        self.limit = limit
        self.prefix = prefix


class BodyLimitMiddleware:
    """``limits`` maps exact paths to their own limit; every other path gets ``default``."""

    def __init__(self, app: ASGIApp, *, default: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.limits.get(path, self.default)
        declared = _content_length(scope)
        if declared == -1:
            await _refuse(scope, send, 400, "invalid Content-Length")
            return
        if declared is not None and declared > limit and path not in self.limits:
            metrics.HTTP_BODY_REFUSED.inc()
            await _refuse(scope, send, 413, f"body larger than {limit} bytes")
            return
        # Paths with a limit of their own (ingest) read up to one byte past it, so the refused
        # batch can be recorded with a prefix of its bytes: memory stays bounded by the limit.
        received = 0
        prefix = bytearray()
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if len(prefix) <= limit:
                    prefix.extend(chunk[: limit + 1 - len(prefix)])
                if received > limit:
                    metrics.HTTP_BODY_REFUSED.inc()
                    raise BodyTooLarge(limit, bytes(prefix))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            # Raised somewhere the app's own exception handlers did not see it (a middleware
            # or a background read): answer here if nothing was sent yet.
            if not started:
                await _refuse(scope, send, 413, str(exc.detail))


def _content_length(scope: Scope) -> int | None:
    """The declared length, None when absent, -1 when it is not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            # A bounded number of digits: int() of a huge string is itself a cost.
            if not text.isdigit() or len(text) > 18:
                return -1
            return int(text)
    return None


async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
