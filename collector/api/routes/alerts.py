"""Alerts, alert rules and notification targets; the live alert stream (Server-Sent Events).

Scoping: admins and technicians see every home; a homeowner sees the alerts of their homes only
(an alert belongs to the home its device was in when it fired) and edits only their homes' rules
and targets. Rules without a home are defaults, which only admins edit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from datetime import time as dtime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Connection, text

from collector.alerts import lifecycle
from collector.alerts.backtest import WouldBeAlert, backtest
from collector.alerts.evaluate import Sample
from collector.alerts.messages import Subject
from collector.alerts.rules import RULE_COLUMNS, Kind, Rule, RuleError, Severity, validate_params
from collector.alerts.stream import AlertStream
from collector.api.deps import CurrentUser, DbConn, RowId
from collector.api.schemas import StorableJson, StoredText
from collector.auth.principal import Principal, Role
from collector.notify.base import KINDS as NOTIFIER_KINDS
from collector.notify.base import validate_config
from collector.notify.destinations import is_public, target_host

router = APIRouter(tags=["alerts"])

# A stream with nothing to say still writes a comment this often, so proxies keep it open and
# clients notice a dead connection.
KEEPALIVE_S = 15.0
MAX_BACKTEST_READINGS = 500_000
# The per-home quota of each table, by setting name (see collector/config.py).
QUOTAS = {
    "alert_rules": "alerts_max_rules_per_home",
    "notify_targets": "alerts_max_targets_per_home",
}


# -- scoping -------------------------------------------------------------------------------------


def visible_homes(who: Principal) -> list[int] | None:
    """None: every home (admins, technicians); otherwise the homes this person may see."""
    if who.role in (Role.admin, Role.technician):
        return None
    return sorted(who.home_ids)


def _may_edit_home(who: Principal, home_id: int | None) -> bool:
    if who.role is Role.admin:
        return True
    return who.role is Role.homeowner and home_id is not None and home_id in who.home_ids


def _check_quota(request: Request, db: Connection, home_id: int | None, *, table: str) -> None:
    """409 when the home already has as many rules (or targets) as one home may have.

    Applies to admins too: the quota protects alerting for the other homes, whoever adds the
    rule. Defaults (no home) are not counted."""
    if home_id is None:
        return
    setting = QUOTAS[table]
    limit = int(getattr(request.app.state.settings, setting))
    # Locking the home's row makes concurrent creations for one home take turns, so two
    # requests cannot both pass the count.
    db.execute(text("SELECT 1 FROM homes WHERE home_id = :h FOR UPDATE"), {"h": home_id})
    count = db.execute(
        text(f"SELECT count(*) FROM {table} WHERE home_id = :h"),  # table: a key of QUOTAS
        {"h": home_id},
    ).scalar_one()
    if count >= limit:
        what = "alert rules" if table == "alert_rules" else "notification targets"
        raise HTTPException(
            status_code=409,
            detail=f"quota: home {home_id} already has {count} {what}, the most one home may "
            f"have ({limit}, setting THERMOWATCH_{setting.upper()}); delete one first",
        )


def _device_home(db: Connection, who: Principal, device_id: str) -> int | None:
    row = db.execute(
        text("SELECT home_id FROM devices WHERE device_id = :d"), {"d": device_id}
    ).first()
    if row is None or not who.may_see_home(row[0]):
        raise HTTPException(status_code=404, detail="device not found")
    return None if row[0] is None else int(row[0])


# -- alerts --------------------------------------------------------------------------------------


class AlertOut(BaseModel):
    id: int
    rule_id: int
    rule_name: str
    device_id: str
    sensor_id: str = Field(description="Empty for device-level alerts (offline)")
    home_id: int | None
    kind: Kind
    severity: Severity
    state: str = Field(description="pending, firing, acknowledged or resolved")
    started_at: datetime = Field(description="Measurement time the condition began")
    fired_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    value: float | None
    threshold: float | None
    message: str
    backfill: bool = Field(description="Fired while late data was being caught up")
    flap_count: int
    silenced_until: datetime | None


class HistoryOut(BaseModel):
    at: datetime
    measured_at: datetime | None
    from_state: str | None
    to_state: str
    actor: str
    value: float | None
    note: str | None


class AckIn(BaseModel):
    note: StoredText | None = Field(default=None, max_length=500)


class SilenceIn(BaseModel):
    duration_s: float = Field(gt=0, le=30 * 86400, description="How long, in seconds")
    note: StoredText | None = Field(default=None, max_length=500)


_ALERT_SELECT = (
    "SELECT a.id, a.rule_id, r.name AS rule_name, a.device_id, a.sensor_id, a.home_id, a.kind, "
    "a.severity, a.state, a.started_at, a.fired_at, a.acknowledged_at, a.resolved_at, a.value, "
    "a.threshold, a.message, a.backfill, a.flap_count, a.silenced_until "
    "FROM alerts a JOIN alert_rules r ON r.id = a.rule_id "
)
_SCOPE = "(CAST(:homes AS bigint[]) IS NULL OR a.home_id = ANY(CAST(:homes AS bigint[])))"


def _alert(db: Connection, who: Principal, alert_id: int) -> AlertOut:
    row = (
        db.execute(
            text(_ALERT_SELECT + f"WHERE a.id = :id AND {_SCOPE}"),
            {"id": alert_id, "homes": visible_homes(who)},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise HTTPException(status_code=404, detail="alert not found")
    return AlertOut(**row)


@router.get(
    "/api/v1/alerts",
    response_model=list[AlertOut],
    summary="Alerts you may see, newest first",
    description="`state=open` (default) lists pending, firing and acknowledged alerts.",
)
def list_alerts(
    db: DbConn,
    who: CurrentUser,
    state: Annotated[str, Query(pattern="^(open|all|pending|firing|acknowledged|resolved)$")] = (
        "open"
    ),
    severity: Severity | None = None,
    kind: Kind | None = None,
    home_id: int | None = None,
    device_id: StoredText | None = None,
    sensor_id: StoredText | None = None,
    since: Annotated[datetime | None, Query(description="Started at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    where = [_SCOPE]
    params: dict[str, Any] = {"homes": visible_homes(who), "limit": limit}
    if state == "open":
        where.append("a.state <> 'resolved'")
    elif state != "all":
        where.append("a.state = :state")
        params["state"] = state
    for name, value in (
        ("severity", severity),
        ("kind", kind),
        ("home_id", home_id),
        ("device_id", device_id),
        ("sensor_id", sensor_id),
    ):
        if value is not None:
            where.append(f"a.{name} = :{name}")
            params[name] = value.value if isinstance(value, Severity | Kind) else value
    if since is not None:
        where.append("a.started_at >= :since")
        params["since"] = since
    sql = _ALERT_SELECT + "WHERE " + " AND ".join(where) + " ORDER BY a.id DESC LIMIT :limit"
    return [AlertOut(**r) for r in db.execute(text(sql), params).mappings()]


def _stream(request: Request) -> AlertStream:
    stream: AlertStream | None = getattr(request.app.state, "alert_stream", None)
    if stream is None:
        raise HTTPException(status_code=503, detail="alerts are not enabled on this instance")
    return stream


@router.get(
    "/api/v1/alerts/stream",
    summary="Live alert changes (Server-Sent Events)",
    description="Each change is an `alert` event whose data is the alert as JSON with an "
    "`event` field (pending, firing, acknowledged, silenced, reopened, resolved). Changes made "
    "by any collector instance arrive on every instance's stream.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def alert_stream(
    request: Request,
    who: CurrentUser,
    device_id: StoredText | None = None,
    home_id: int | None = None,
) -> StreamingResponse:
    stream = _stream(request)
    homes = visible_homes(who)
    allowed = None if homes is None else frozenset(homes)

    def accepts(event: dict[str, Any]) -> bool:
        if allowed is not None and event.get("home_id") not in allowed:
            return False
        if device_id is not None and event.get("device_id") != device_id:
            return False
        return home_id is None or event.get("home_id") == home_id

    async def events() -> AsyncIterator[str]:
        # Subscribed here, not before the response: a client gone before the first byte leaves
        # nothing behind.
        subscriber = stream.subscribe(accepts)
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if event is None:
                    return
                yield f"event: alert\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
        finally:
            stream.unsubscribe(subscriber)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/api/v1/alerts/{alert_id}", response_model=AlertOut, summary="One alert")
def get_alert(alert_id: RowId, db: DbConn, who: CurrentUser) -> AlertOut:
    return _alert(db, who, alert_id)


@router.get(
    "/api/v1/alerts/{alert_id}/history",
    response_model=list[HistoryOut],
    summary="Every state change of one alert, oldest first",
)
def alert_history(alert_id: RowId, db: DbConn, who: CurrentUser) -> list[HistoryOut]:
    _alert(db, who, alert_id)
    rows = db.execute(
        text(
            "SELECT at, measured_at, from_state, to_state, actor, value, note "
            "FROM alert_history WHERE alert_id = :id ORDER BY id"
        ),
        {"id": alert_id},
    ).mappings()
    return [HistoryOut(**r) for r in rows]


def _raw_cursor(db: Connection) -> Any:
    # The lifecycle functions work on psycopg cursors; this one shares the request's
    # transaction, which the route commits.
    return db.connection.driver_connection.cursor()  # type: ignore[union-attr]


@router.post(
    "/api/v1/alerts/{alert_id}/acknowledge",
    response_model=AlertOut,
    summary="Acknowledge a firing alert",
    description="Stops repeated notifications; the alert still resolves by itself. 409 when "
    "the alert is not firing.",
)
def acknowledge_alert(
    alert_id: RowId, db: DbConn, who: CurrentUser, body: AckIn | None = None
) -> AlertOut:
    _alert(db, who, alert_id)
    with _raw_cursor(db) as cur:
        done = lifecycle.acknowledge(cur, alert_id, who.username, body.note if body else None)
    if not done:
        db.rollback()
        raise HTTPException(status_code=409, detail="only a firing alert can be acknowledged")
    db.commit()
    return _alert(db, who, alert_id)


@router.post(
    "/api/v1/alerts/{alert_id}/silence",
    response_model=AlertOut,
    summary="Silence an open alert for a period",
    description="No notifications (repeats, resolved) for this alert until the period ends.",
)
def silence_alert(alert_id: RowId, body: SilenceIn, db: DbConn, who: CurrentUser) -> AlertOut:
    _alert(db, who, alert_id)
    with _raw_cursor(db) as cur:
        done = lifecycle.silence(cur, alert_id, body.duration_s, who.username, body.note)
    if not done:
        db.rollback()
        raise HTTPException(status_code=409, detail="a resolved alert cannot be silenced")
    db.commit()
    return _alert(db, who, alert_id)


# -- rules ---------------------------------------------------------------------------------------


class RuleIn(BaseModel):
    name: StoredText = Field(min_length=1, max_length=100)
    kind: Kind
    params: Annotated[dict[str, Any], StorableJson] = Field(
        default_factory=dict, description="See docs/alerts.md"
    )
    severity: Severity = Severity.warning
    home_id: int | None = Field(default=None, description="Applies to every sensor of a home")
    device_id: StoredText | None = Field(default=None, description="Applies to one device")
    sensor_id: StoredText | None = Field(default=None, description="With device_id: one sensor")
    enabled: bool = True


class RulePatch(BaseModel):
    name: StoredText | None = Field(default=None, min_length=1, max_length=100)
    params: Annotated[dict[str, Any], StorableJson] | None = None
    severity: Severity | None = None
    enabled: bool | None = None


class RuleOut(BaseModel):
    id: int
    name: str
    kind: Kind
    params: dict[str, Any]
    severity: Severity
    home_id: int | None
    device_id: str | None
    sensor_id: str | None
    enabled: bool


def _rule_out(row: Any) -> RuleOut:
    return RuleOut(**dict(zip(RULE_COLUMNS.split(", "), row, strict=True)))


def _rule(db: Connection, who: Principal, rule_id: int) -> RuleOut:
    row = db.execute(
        text(f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = :id"), {"id": rule_id}
    ).first()
    if row is None:
        raise HTTPException(status_code=404, detail="rule not found")
    rule = _rule_out(row)
    homes = visible_homes(who)
    if homes is not None and rule.home_id is not None and rule.home_id not in homes:
        raise HTTPException(status_code=404, detail="rule not found")
    return rule


def _params(kind: Kind, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_params(kind, params)
    except RuleError as exc:
        raise HTTPException(status_code=422, detail=f"params: {exc}") from None


@router.get(
    "/api/v1/alert-rules",
    response_model=list[RuleOut],
    summary="Rules that apply to homes you may see, and the defaults",
)
def list_rules(db: DbConn, who: CurrentUser) -> list[RuleOut]:
    homes = visible_homes(who)
    rows = db.execute(
        text(
            f"SELECT {RULE_COLUMNS} FROM alert_rules "
            "WHERE CAST(:homes AS bigint[]) IS NULL OR home_id IS NULL "
            "   OR home_id = ANY(CAST(:homes AS bigint[])) ORDER BY id"
        ),
        {"homes": homes},
    ).all()
    rules = [_rule_out(r) for r in rows]
    # A default rule with a device but no home (a device without a home) is staff business.
    return [r for r in rules if homes is None or r.home_id is not None or r.device_id is None]


@router.post(
    "/api/v1/alert-rules",
    response_model=RuleOut,
    status_code=201,
    summary="Create a rule",
    description="Homeowners create rules for their own homes and devices; rules without a home "
    "or device are defaults for every sensor, which only admins create.",
)
def create_rule(request: Request, body: RuleIn, db: DbConn, who: CurrentUser) -> RuleOut:
    if body.sensor_id is not None and body.device_id is None:
        raise HTTPException(status_code=422, detail="sensor_id needs device_id")
    if body.kind is Kind.offline and body.sensor_id is not None:
        raise HTTPException(status_code=422, detail="offline rules apply to whole devices")
    home_id = body.home_id
    if body.device_id is not None:
        home_id = _device_home(db, who, body.device_id)
    if not _may_edit_home(who, home_id):
        raise HTTPException(status_code=403, detail="forbidden")
    params = _params(body.kind, body.params)
    _check_quota(request, db, home_id, table="alert_rules")
    new_id = db.execute(
        text(
            "INSERT INTO alert_rules (name, kind, params, severity, home_id, device_id, "
            "sensor_id, enabled, created_by) VALUES (:name, :kind, CAST(:params AS jsonb), "
            ":severity, :home, :device, :sensor, :enabled, :by) RETURNING id"
        ),
        {
            "name": body.name,
            "kind": body.kind.value,
            "params": json.dumps(params),
            "severity": body.severity.value,
            "home": home_id,
            "device": body.device_id,
            "sensor": body.sensor_id,
            "enabled": body.enabled,
            "by": who.username,
        },
    ).scalar_one()
    db.commit()
    return _rule(db, who, int(new_id))


@router.get("/api/v1/alert-rules/{rule_id}", response_model=RuleOut, summary="One rule")
def get_rule(rule_id: RowId, db: DbConn, who: CurrentUser) -> RuleOut:
    return _rule(db, who, rule_id)


@router.patch("/api/v1/alert-rules/{rule_id}", response_model=RuleOut, summary="Change a rule")
def update_rule(rule_id: RowId, body: RulePatch, db: DbConn, who: CurrentUser) -> RuleOut:
    rule = _rule(db, who, rule_id)
    if not _may_edit_home(who, rule.home_id):
        raise HTTPException(status_code=403, detail="forbidden")
    params = rule.params if body.params is None else _params(rule.kind, body.params)
    db.execute(
        text(
            "UPDATE alert_rules SET name = :name, params = CAST(:params AS jsonb), "
            "severity = :severity, enabled = :enabled, updated_at = now() WHERE id = :id"
        ),
        {
            "id": rule_id,
            "name": body.name or rule.name,
            "params": json.dumps(params),
            "severity": (body.severity or rule.severity).value,
            "enabled": rule.enabled if body.enabled is None else body.enabled,
        },
    )
    if body.params is not None:
        # New parameters mean a new detector: start its state afresh.
        db.execute(text("DELETE FROM alert_state WHERE rule_id = :id"), {"id": rule_id})
    db.commit()
    return _rule(db, who, rule_id)


@router.delete(
    "/api/v1/alert-rules/{rule_id}",
    status_code=204,
    summary="Delete a rule with its alerts and their history",
)
def delete_rule(rule_id: RowId, db: DbConn, who: CurrentUser) -> None:
    rule = _rule(db, who, rule_id)
    if not _may_edit_home(who, rule.home_id):
        raise HTTPException(status_code=403, detail="forbidden")
    db.execute(text("DELETE FROM alert_rules WHERE id = :id"), {"id": rule_id})
    db.commit()


class BacktestIn(BaseModel):
    rule: RuleIn
    device_id: StoredText
    sensor_id: StoredText = Field(description="Empty for device-level (offline) rules")
    start: datetime
    end: datetime | None = None


class BacktestOut(BaseModel):
    readings: int
    alerts: list[dict[str, Any]]


@router.post(
    "/api/v1/alert-rules/backtest",
    response_model=BacktestOut,
    summary="Run a rule over stored history and list the alerts it would have raised",
)
def backtest_rule(body: BacktestIn, db: DbConn, who: CurrentUser) -> BacktestOut:
    _device_home(db, who, body.device_id)
    end = body.end or datetime.now(UTC)
    params = _params(body.rule.kind, body.rule.params)
    rule = Rule(0, body.rule.name, body.rule.kind, params, body.rule.severity)
    sensor_filter = "" if body.rule.kind is Kind.offline else "AND sensor_id = :s"
    args = {
        "d": body.device_id,
        "s": body.sensor_id,
        "a": body.start,
        "b": end,
        "n": MAX_BACKTEST_READINGS,
    }
    rows = db.execute(
        text(
            "SELECT (extract(epoch FROM time) * 1000)::bigint, value, fault FROM readings "
            f"WHERE device_id = :d {sensor_filter} AND time >= :a AND time < :b "
            "ORDER BY time LIMIT :n"
        ),
        args,
    ).all()
    samples = [Sample(int(r[0]), r[1], r[2]) for r in rows]
    if body.rule.kind is Kind.anomaly:
        events = db.execute(
            text(
                "SELECT (extract(epoch FROM time) * 1000)::bigint, kind, value FROM device_events "
                "WHERE device_id = :d AND sensor_id = :s AND time >= :a AND time < :b"
            ),
            args,
        ).all()
        samples += [Sample(int(e[0]), e[2], None, e[1]) for e in events]
    labels = db.execute(
        text(
            "SELECT d.name, s.label FROM devices d LEFT JOIN sensors s "
            "ON s.device_id = d.device_id AND s.sensor_id = :s WHERE d.device_id = :d"
        ),
        args,
    ).first()
    subject = Subject(
        body.device_id,
        "" if body.rule.kind is Kind.offline else body.sensor_id,
        labels[1] if labels else None,
        labels[0] if labels else None,
    )
    found: list[WouldBeAlert] = backtest(rule, subject, samples, end_ms=int(end.timestamp() * 1000))
    return BacktestOut(readings=len(rows), alerts=[a.as_dict() for a in found])


# -- notification targets -------------------------------------------------------------------------

_SECRET_KEYS = ("password", "secret", "token")


class TargetIn(BaseModel):
    name: StoredText = Field(min_length=1, max_length=100)
    kind: str = Field(description="webhook, smtp, mqtt or homeassistant")
    home_id: int | None = Field(default=None, description="None: every home (admins only)")
    config: Annotated[dict[str, Any], StorableJson]
    min_severity: Severity = Severity.info
    quiet_start: dtime | None = Field(default=None, description="Local time, e.g. 22:00")
    quiet_end: dtime | None = None
    quiet_tz: str = "UTC"
    repeat_interval_s: int = Field(default=0, ge=0, description="0: never repeat")
    group_wait_s: float = Field(default=0.0, ge=0, le=600)
    enabled: bool = True

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in NOTIFIER_KINDS:
            raise ValueError(f"one of {', '.join(NOTIFIER_KINDS)}")
        return v

    @field_validator("quiet_tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone") from None
        return v


class TargetOut(TargetIn):
    id: int


_TARGET_COLUMNS = (
    "id, name, kind, home_id, config, min_severity, quiet_start, quiet_end, quiet_tz, "
    "repeat_interval_s, group_wait_s, enabled"
)


def _masked(config: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("********" if v and any(s in k.lower() for s in _SECRET_KEYS) else v)
        for k, v in config.items()
    }


def _target(db: Connection, who: Principal, target_id: int) -> dict[str, Any]:
    row = (
        db.execute(
            text(f"SELECT {_TARGET_COLUMNS} FROM notify_targets WHERE id = :id"),
            {"id": target_id},
        )
        .mappings()
        .first()
    )
    homes = visible_homes(who)
    if row is None or (homes is not None and row["home_id"] not in homes):
        raise HTTPException(status_code=404, detail="target not found")
    return dict(row)


def _target_out(row: dict[str, Any]) -> TargetOut:
    return TargetOut(**dict(row, config=_masked(row["config"] or {})))


@router.get(
    "/api/v1/notify-targets",
    response_model=list[TargetOut],
    summary="Where notifications go (secrets masked)",
)
def list_targets(db: DbConn, who: CurrentUser) -> list[TargetOut]:
    rows = db.execute(
        text(
            f"SELECT {_TARGET_COLUMNS} FROM notify_targets "
            "WHERE CAST(:homes AS bigint[]) IS NULL OR home_id = ANY(CAST(:homes AS bigint[])) "
            "ORDER BY id"
        ),
        {"homes": visible_homes(who)},
    ).mappings()
    return [_target_out(dict(r)) for r in rows]


def _config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_config(kind, config)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"config: {exc}") from None


def _check_destination(request: Request, who: Principal, body: TargetIn) -> None:
    settings = request.app.state.settings
    if who.role is Role.admin or settings.notify_allow_private_targets:
        return
    if not is_public(target_host(body.kind, body.config)):
        raise HTTPException(
            status_code=422, detail="config: the target must be reachable at a public address"
        )


def _save_target(db: Connection, body: TargetIn, target_id: int | None) -> int:
    values = body.model_dump()
    values["config"] = json.dumps(_config(body.kind, body.config))
    values["min_severity"] = body.min_severity.value
    if target_id is None:
        sql = (
            "INSERT INTO notify_targets (name, kind, home_id, config, min_severity, quiet_start, "
            "quiet_end, quiet_tz, repeat_interval_s, group_wait_s, enabled) VALUES (:name, :kind, "
            ":home_id, CAST(:config AS jsonb), :min_severity, :quiet_start, :quiet_end, "
            ":quiet_tz, :repeat_interval_s, :group_wait_s, :enabled) RETURNING id"
        )
    else:
        values["id"] = target_id
        sql = (
            "UPDATE notify_targets SET name = :name, kind = :kind, config = CAST(:config AS "
            "jsonb), min_severity = :min_severity, quiet_start = :quiet_start, quiet_end = "
            ":quiet_end, quiet_tz = :quiet_tz, repeat_interval_s = :repeat_interval_s, "
            "group_wait_s = :group_wait_s, enabled = :enabled WHERE id = :id RETURNING id"
        )
    new_id = int(db.execute(text(sql), values).scalar_one())
    db.commit()
    return new_id


@router.post(
    "/api/v1/notify-targets",
    response_model=TargetOut,
    status_code=201,
    summary="Add a notification target",
    description="Homeowners add targets for their own homes, at public addresses only; targets "
    "without a home receive every home's alerts and are for admins.",
)
def create_target(request: Request, body: TargetIn, db: DbConn, who: CurrentUser) -> TargetOut:
    if not _may_edit_home(who, body.home_id):
        raise HTTPException(status_code=403, detail="forbidden")
    _check_destination(request, who, body)
    _check_quota(request, db, body.home_id, table="notify_targets")
    return _target_out(_target(db, who, _save_target(db, body, None)))


@router.put(
    "/api/v1/notify-targets/{target_id}",
    response_model=TargetOut,
    summary="Replace a notification target",
)
def replace_target(
    request: Request, target_id: RowId, body: TargetIn, db: DbConn, who: CurrentUser
) -> TargetOut:
    current = _target(db, who, target_id)
    if not _may_edit_home(who, current["home_id"]) or body.home_id != current["home_id"]:
        raise HTTPException(status_code=403, detail="forbidden")
    # Secrets come back masked from GET; a masked value sent back means "unchanged".
    stored = current["config"] or {}
    body.config = {k: stored.get(k) if v == "********" else v for k, v in body.config.items()}
    _check_destination(request, who, body)
    return _target_out(_target(db, who, _save_target(db, body, target_id)))


@router.delete(
    "/api/v1/notify-targets/{target_id}", status_code=204, summary="Remove a notification target"
)
def delete_target(target_id: RowId, db: DbConn, who: CurrentUser) -> None:
    current = _target(db, who, target_id)
    if not _may_edit_home(who, current["home_id"]):
        raise HTTPException(status_code=403, detail="forbidden")
    db.execute(text("DELETE FROM notify_targets WHERE id = :id"), {"id": target_id})
    db.commit()
