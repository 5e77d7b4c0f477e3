"""HTTP ingest: ``POST /api/v1/ingest`` with a protocol v1 batch (JSON or CBOR).

The response is sent after the batch is committed and carries the same ack as MQTT and CoAP.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from collector.api.body_limit import BodyTooLarge
from collector.api.deps import DeviceIdentity, Pipeline
from collector.ingest.pipeline import CBOR, JSON, Overloaded
from shared import protocol as p
from shared.decode import BatchError

router = APIRouter(tags=["ingest"])


@router.post(
    p.HTTP_INGEST_PATH,
    summary="Ingest one batch",
    description="Body: a protocol v1 batch (application/json or application/cbor); header "
    "`Authorization: Bearer <device token>` from the provisioning bundle. Answers with "
    "the acknowledgement after the batch is committed: 200 with counts of stored, duplicate "
    "and rejected records; 400 when the batch as a whole is unusable; 503 when busy.",
    responses={
        200: {"description": "Committed"},
        400: {"description": "Batch refused"},
        401: {"description": "Missing or invalid device token"},
        403: {"description": "The batch speaks for another device"},
        413: {"description": "Too large"},
    },
)
async def ingest(request: Request, pipeline: Pipeline, identity: DeviceIdentity) -> Response:
    try:
        body = await request.body()
    except BodyTooLarge as exc:
        # Stopped one byte past the limit (collector.api.body_limit); the prefix is recorded
        # through the pipeline, which refuses it as oversize with its reason.
        await pipeline.submit_async(exc.prefix, identity=identity, transport="http")
        raise HTTPException(status_code=413, detail="oversize") from None
    content_type = request.headers.get("content-type", "application/json")
    body_format = CBOR if "cbor" in content_type else JSON
    try:
        outcome = await pipeline.submit_async(
            body, identity=identity, transport="http", body_format=body_format
        )
    except Overloaded:
        raise HTTPException(status_code=503, detail="busy", headers={"Retry-After": "1"}) from None
    except BatchError as exc:
        # The pipeline refuses content without raising; should a refusal escape anyway, it is
        # still the sender's 400, never a 500.
        raise HTTPException(status_code=400, detail=exc.reason) from None
    if outcome.error == "oversize":
        raise HTTPException(status_code=413, detail="oversize")
    if outcome.error and not outcome.ackable:
        raise HTTPException(status_code=400, detail=outcome.error)
    if outcome.error:
        raise HTTPException(status_code=403, detail=outcome.error)
    ack = p.encode_ack(
        outcome.seq, outcome.boot_id, outcome.stored, outcome.duplicates, outcome.rejected
    )
    return Response(ack, media_type="application/json")
