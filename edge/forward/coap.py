"""CoAP transport (aiocoap): confirmable ``POST coap://host/tw/v1/<device>/<kind>``.

The collector answers only after its commit, with the ack as the response body, so the response
*is* the application-level ack. aiocoap's retransmissions cover lost datagrams within one
request; a request that gets no answer at all is repeated by the agent after its ack timeout.
aiocoap runs on its own asyncio loop in a background thread, so the agent stays synchronous.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future

import aiocoap
from aiocoap.numbers.contentformat import ContentFormat

from edge.config import EdgeSettings
from edge.forward.base import AckHandler, Backoff, Forwarder
from shared import protocol
from shared.decode import BatchError, decode_ack

log = logging.getLogger(__name__)


class CoapForwarder(Forwarder):
    """Connectionless: "connected" means no request failed since the backoff delay ran out."""

    def __init__(self, settings: EdgeSettings, on_ack: AckHandler) -> None:
        super().__init__(on_ack)
        if not settings.coap_url:
            raise ValueError("transport coap needs coap_url (e.g. coap://collector.example)")
        self.base_url = settings.coap_url.rstrip("/")
        self.token = settings.coap_token
        self.device_id = settings.device_id
        self.backoff = Backoff(settings.backoff_min_s, settings.backoff_max_s)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="coap", daemon=True)
        self._context: aiocoap.Context | None = None
        self._retry_at = 0.0
        self._inflight: set[Future[None]] = set()

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            aiocoap.Context.create_client_context(), self._loop
        )
        self._context = future.result(timeout=10)

    def stop(self) -> None:
        if self._context is not None:
            asyncio.run_coroutine_threadsafe(self._context.shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @property
    def connected(self) -> bool:
        return time.monotonic() >= self._retry_at

    def url_for(self, kind: str) -> str:
        url = self.base_url + "/" + protocol.topic(self.device_id, kind)
        return url + "?token=" + self.token if self.token else url

    def send(self, kind: str, payload: bytes) -> bool:
        if self._context is None or not self.connected:
            return False
        future = asyncio.run_coroutine_threadsafe(self._post(kind, payload), self._loop)
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)
        return True

    async def _post(self, kind: str, payload: bytes) -> None:
        assert self._context is not None
        request = aiocoap.Message(
            code=aiocoap.POST,
            mtype=aiocoap.CON,
            uri=self.url_for(kind),
            payload=payload,
            content_format=ContentFormat.JSON,
        )
        try:
            response = await self._context.request(request).response
        except Exception as exc:  # aiocoap raises its own error types for timeouts and resets
            delay = self.backoff.next_delay()
            self._retry_at = time.monotonic() + delay
            log.warning("CoAP POST failed (%s); pausing %.1f s", exc, delay)
            return
        if not response.code.is_successful():
            log.warning("CoAP POST answered %s: %r", response.code, response.payload[:200])
            if response.code == aiocoap.SERVICE_UNAVAILABLE:
                self._retry_at = time.monotonic() + self.backoff.next_delay()
            return
        self.backoff.reset()
        try:
            self.on_ack(decode_ack(response.payload))
        except (BatchError, ValueError) as exc:
            log.warning("CoAP response is not an ack: %s", exc)
