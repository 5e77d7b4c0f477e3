"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable, writer healthy, MQTT connected")
def readyz(request: Request, response: Response) -> dict[str, object]:
    state = request.app.state
    checks: dict[str, bool] = {}
    reasons: dict[str, str] = {}
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:
        checks["database"] = False
    writer = getattr(state, "writer", None)
    if writer is not None:
        # A writer that has not committed yet is healthy unless the database is down.
        checks["writer"] = writer.healthy.is_set() or checks["database"]
        # Work waiting and nothing committed: a database that answers SELECT 1 can still block or
        # refuse every write.
        stall = writer.stalled()
        if stall is not None:
            checks["writer"] = False
            reasons["writer"] = stall
    mqtt = getattr(state, "mqtt", None)
    if mqtt is not None:
        # As the broker sees it: connected and its keepalive answered (see MqttIngest.ready).
        checks["mqtt"] = mqtt.ready()
    ready = all(checks.values())
    response.status_code = 200 if ready else 503
    body: dict[str, object] = {"ready": ready, "checks": checks}
    if reasons:
        body["reasons"] = reasons
    return body


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics_endpoint() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
