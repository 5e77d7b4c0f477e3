"""CoAP transport (aiocoap): ``POST coap://host/tw/v1/<device>/readings?t=<token>`` with a JSON
(50) or CBOR (60) body; the token is the device's credential. The response is sent only after the
batch is committed, so a confirmable request that gets no answer is retransmitted by the board
and stored once."""

from __future__ import annotations

import asyncio
import logging

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.pipe import Pipe

from collector.ingest.pipeline import CBOR, JSON, IngestPipeline, Overloaded
from shared import protocol as p
from shared.decode import BatchError

log = logging.getLogger(__name__)

# "t" keeps requests from small boards short; "token" is the same, spelled out.
_TOKEN_KEYS = ("t=", "token=")


class ReadingsResource(resource.Resource, resource.PathCapable):
    """Mounted at ``tw/v1``; answers ``<device>/readings`` and ``<device>/events``."""

    def __init__(self, pipeline: IngestPipeline) -> None:
        super().__init__()
        self.pipeline = pipeline

    async def render_to_pipe(self, pipe: Pipe) -> None:
        try:
            await super().render_to_pipe(pipe)
        except ValueError:
            # aiocoap's block-wise assembly raises this when the blocks of two uploads to the
            # same path interleave; 4.08 tells the sender to start its upload again.
            pipe.add_response(aiocoap.Message(code=aiocoap.REQUEST_ENTITY_INCOMPLETE), is_last=True)

    async def _identity(self, request: aiocoap.Message, path_device: str) -> str | aiocoap.Message:
        """The device the request's token (``?t=<token>``) belongs to, or an error response.

        Without a token only development mode (auto-registration) accepts the path's device.
        """
        token = next(
            (q.partition("=")[2] for q in request.opt.uri_query if q.startswith(_TOKEN_KEYS)),
            None,
        )
        if token is None:
            if self.pipeline.settings.auto_register_devices:
                return path_device
            return aiocoap.Message(code=aiocoap.UNAUTHORIZED, payload=b"token required")
        device_id = await asyncio.to_thread(self.pipeline.registry.device_for_token, token)
        if device_id is None:
            return aiocoap.Message(code=aiocoap.UNAUTHORIZED, payload=b"invalid token")
        if device_id != path_device:
            return aiocoap.Message(code=aiocoap.FORBIDDEN, payload=b"device_mismatch")
        return device_id

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        path = request.opt.uri_path
        if len(path) != 2 or path[1] not in (p.T_READINGS, p.T_EVENTS):
            return aiocoap.Message(code=aiocoap.NOT_FOUND)
        identity = await self._identity(request, path[0])
        if isinstance(identity, aiocoap.Message):
            return identity
        cf = request.opt.content_format
        if cf in (None, ContentFormat.JSON):
            body_format = JSON
        elif cf == ContentFormat.CBOR:
            body_format = CBOR
        else:
            return aiocoap.Message(code=aiocoap.UNSUPPORTED_CONTENT_FORMAT)
        try:
            outcome = await self.pipeline.submit_async(
                request.payload, identity=identity, transport="coap", body_format=body_format
            )
        except Overloaded:
            return aiocoap.Message(code=aiocoap.SERVICE_UNAVAILABLE, payload=b"busy")
        except BatchError as exc:
            # The pipeline refuses content without raising; should a refusal escape anyway, it
            # is still the sender's 4.00, not the 4.08 render_to_pipe gives other ValueErrors.
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=exc.reason.encode())
        if outcome.error == "oversize":
            return aiocoap.Message(code=aiocoap.REQUEST_ENTITY_TOO_LARGE, payload=b"oversize")
        if outcome.error and not outcome.ackable:
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=outcome.error.encode())
        if outcome.error:
            return aiocoap.Message(code=aiocoap.FORBIDDEN, payload=outcome.error.encode())
        body = p.encode_ack(
            outcome.seq, outcome.boot_id, outcome.stored, outcome.duplicates, outcome.rejected
        )
        return aiocoap.Message(
            code=aiocoap.CHANGED, payload=body, content_format=ContentFormat.JSON
        )


async def start_coap_server(pipeline: IngestPipeline, host: str, port: int) -> aiocoap.Context:
    site = resource.Site()
    site.add_resource(("tw", "v1"), ReadingsResource(pipeline))
    # UDP only: CoAP over TCP/WebSockets is not offered, and the default transports
    # would also bind a TCP port of the same number.
    return await aiocoap.Context.create_server_context(site, bind=(host, port), transports=["udp6"])
