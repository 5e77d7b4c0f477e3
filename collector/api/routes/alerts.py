"""Alerts, alert rules and notification targets; the live alert stream (Server-Sent Events).

Scoping: admins and technicians see every home; a homeowner sees the alerts of their homes only
(an alert belongs to the home its device was in when it fired) and edits only their homes' rules
and targets. Rules without a home are defaults, which only admins edit. A device's rules belong
to the home the device is in: moving it retires them (collector/api/routes/devices.py).
Measured values in alerts follow the data policy of :mod:`collector.api.policy`. Every change
to a rule, a target or an alert (acknowledged, silenced) is written to the audit log.
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
from collector.alerts.stream import AlertStream, Ended, Keepalive
from collector.api import policy
from collector.api.deps import CurrentUser, DbConn, RowId, reauthorize
from collector.api.schemas import ApiTime, HomeId, StorableJson, StoredText
from collector.auth import audit
from collector.auth.principal import Principal, Role
from collector.notify.base import KINDS as NOTIFIER_KINDS
from collector.notify.base import NotifyError, validate_config
from collector.notify.destinations import UnsafeDestination, check_target, target_host
from collector.notify.secrets import (
    MASK,
    SecretBox,
    SecretError,
    box_for,
    destination,
    destination_fields,
    mask_url,
    open_config,
    seal_config,
    secret_fields,
)

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
    return AlertOut(**policy.alert_for(who, dict(row)))


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
    since: Annotated[ApiTime | None, Query(description="Started at or after")] = None,
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
    return [
        AlertOut(**policy.alert_for(who, dict(r))) for r in db.execute(text(sql), params).mappings()
    ]


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
    "by any collector instance arrive on every instance's stream. The stream re-checks the "
    "session every `THERMOWATCH_STREAM_RECHECK_S` and closes with an `end` event once it ended "
    "(logout, password change, account disabled) or the role or homes changed.",
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

    async def still_allowed() -> bool:
        # The same person with the same role and homes, session running (else the client
        # reconnects and is authorized afresh, with the filter that then applies).
        now = await asyncio.to_thread(reauthorize, request)
        return now is not None and (now.role, now.home_ids) == (who.role, who.home_ids)

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        # Subscribed when the response starts, not before: a client gone before the first
        # byte leaves nothing behind.
        async for item in stream.follow(
            accepts,
            still_allowed=still_allowed,
            recheck_s=request.app.state.settings.stream_recheck_s,
            keepalive_s=KEEPALIVE_S,
        ):
            if isinstance(item, Keepalive):
                yield ": keepalive\n\n"
            elif isinstance(item, Ended):
                yield f"event: end\ndata: {json.dumps({'reason': item.reason})}\n\n"
            else:
                shown = policy.alert_for(who, item)
                yield f"event: alert\ndata: {json.dumps(shown, separators=(',', ':'))}\n\n"

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
    alert = _alert(db, who, alert_id)
    rows = db.execute(
        text(
            "SELECT at, measured_at, from_state, to_state, actor, value, note "
            "FROM alert_history WHERE alert_id = :id ORDER BY id"
        ),
        {"id": alert_id},
    ).mappings()
    values = policy.sees_values(who, alert.home_id)
    return [HistoryOut(**dict(r, value=r["value"] if values else None)) for r in rows]


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
    note = body.note if body else None
    with _raw_cursor(db) as cur:
        done = lifecycle.acknowledge(cur, alert_id, who.username, note)
    if not done:
        db.rollback()
        raise HTTPException(status_code=409, detail="only a firing alert can be acknowledged")
    audit.record(db, who, "alert.acknowledge", str(alert_id), note=note)
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
    audit.record(
        db, who, "alert.silence", str(alert_id), duration_s=body.duration_s, note=body.note
    )
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
    home_id: HomeId | None = Field(default=None, description="Applies to every sensor of a home")
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
    retired_at: datetime | None = Field(
        default=None,
        description="Set when the rule's device moved to another home: the rule no longer "
        "applies and cannot be changed (its alerts stay in the history)",
    )
    retired_reason: str | None = None


_RULE_SELECT = f"SELECT {RULE_COLUMNS}, retired_at, retired_reason FROM alert_rules "


def _rule_visible(who: Principal, rule: RuleOut) -> bool:
    homes = visible_homes(who)
    if homes is None:
        return True
    if rule.home_id is None:
        # Defaults are everyone's to read; a rule of a device without a home is staff business.
        return rule.device_id is None
    return rule.home_id in homes


def _rule(db: Connection, who: Principal, rule_id: int) -> RuleOut:
    row = db.execute(text(_RULE_SELECT + "WHERE id = :id"), {"id": rule_id}).mappings().first()
    if row is None or not _rule_visible(who, rule := RuleOut(**row)):
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
    rows = db.execute(
        text(
            _RULE_SELECT + "WHERE CAST(:homes AS bigint[]) IS NULL OR home_id IS NULL "
            "   OR home_id = ANY(CAST(:homes AS bigint[])) ORDER BY id"
        ),
        {"homes": visible_homes(who)},
    ).mappings()
    return [rule for r in rows if _rule_visible(who, rule := RuleOut(**r))]


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
    audit.record(
        db,
        who,
        "rule.create",
        str(new_id),
        name=body.name,
        kind=body.kind.value,
        severity=body.severity.value,
        home_id=home_id,
        device_id=body.device_id,
        sensor_id=body.sensor_id,
        enabled=body.enabled,
        params=params,
    )
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
    if rule.retired_at is not None:
        raise HTTPException(
            status_code=409,
            detail=f"the rule is retired ({rule.retired_reason}); delete it or create a new one",
        )
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
    changes = body.model_dump(exclude_unset=True, mode="json")
    if "params" in changes:
        changes["params"] = params
    audit.record(db, who, "rule.update", str(rule_id), name=rule.name, **changes)
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
    audit.record(
        db,
        who,
        "rule.delete",
        str(rule_id),
        name=rule.name,
        kind=rule.kind.value,
        home_id=rule.home_id,
        device_id=rule.device_id,
    )
    db.commit()


class BacktestIn(BaseModel):
    rule: RuleIn
    device_id: StoredText
    sensor_id: StoredText = Field(description="Empty for device-level (offline) rules")
    start: ApiTime
    end: ApiTime | None = None


class BacktestOut(BaseModel):
    readings: int
    alerts: list[dict[str, Any]]


@router.post(
    "/api/v1/alert-rules/backtest",
    response_model=BacktestOut,
    summary="Run a rule over stored history and list the alerts it would have raised",
)
def backtest_rule(body: BacktestIn, db: DbConn, who: CurrentUser) -> BacktestOut:
    if not policy.sees_values(who, _device_home(db, who, body.device_id)):
        raise HTTPException(status_code=403, detail="forbidden: a backtest reads stored values")
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
#
# A target's secrets (passwords, a webhook's URL and signing secret) are stored encrypted
# (collector/notify/secrets.py) and shown back only as a mask: passwords to nobody, a webhook's
# URL in full to those who may edit the target. Sending a mask back on a replace keeps the stored
# secret, but only while the destination (kind, host, port, URL, STARTTLS) stays the same: a kept
# secret is only ever sent where it was entered. Homeowners edit their own homes' targets, and a
# target an admin made for their home only when the admin allowed it (``owner_editable``).

_SECRET_KEYS = ("password", "secret", "token")  # masked in any config key, known or not


class TargetIn(BaseModel):
    name: StoredText = Field(min_length=1, max_length=100)
    kind: str = Field(description="webhook, smtp, mqtt or homeassistant")
    home_id: HomeId | None = Field(default=None, description="None: every home (admins only)")
    config: Annotated[dict[str, Any], StorableJson] = Field(
        description=f"Secrets come back as {MASK!r}; send that back to keep a stored secret "
        "(refused when the destination changes: enter the secret again)"
    )
    min_severity: Severity = Severity.info
    quiet_start: dtime | None = Field(default=None, description="Local time, e.g. 22:00")
    quiet_end: dtime | None = None
    quiet_tz: str = "UTC"
    repeat_interval_s: int = Field(default=0, ge=0, le=365 * 86400, description="0: never repeat")
    group_wait_s: float = Field(default=0.0, ge=0, le=600)
    enabled: bool = True
    owner_editable: bool | None = Field(
        default=None,
        description="Admins: whether the home's homeowners may change or remove this target "
        "(off unless set). A homeowner's own targets are always theirs to edit.",
    )

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
    owner_editable: bool
    editable: bool = Field(description="Whether you may change or remove this target")
    created_by: str | None = None


_TARGET_COLUMNS = (
    "id, name, kind, home_id, config, min_severity, quiet_start, quiet_end, quiet_tz, "
    "repeat_interval_s, group_wait_s, enabled, owner_editable, private_ok, created_by"
)


def _box(request: Request) -> SecretBox:
    return box_for(request.app.state.secret_key)


def _may_edit_target(who: Principal, row: dict[str, Any]) -> bool:
    if who.role is Role.admin:
        return True
    return (
        who.role is Role.homeowner
        and row["home_id"] is not None
        and row["home_id"] in who.home_ids
        and bool(row["owner_editable"])
    )


def _secret_fields(kind: str) -> tuple[str, ...]:
    try:
        return secret_fields(kind)
    except NotifyError:
        return ()


def _shown_config(box: SecretBox, kind: str, stored: dict[str, Any], editable: bool) -> dict:
    """What a caller sees of a stored config: passwords masked for everyone; a secret that is
    also the destination (a webhook's URL) in full for editors, else scheme and host only."""
    try:
        opened: dict[str, Any] | None = open_config(box, kind, stored)
    except SecretError:
        opened = None
    secrets = _secret_fields(kind)
    where = destination_fields(kind) if secrets else ()
    shown: dict[str, Any] = {}
    for key, value in stored.items():
        if (
            value is None
            or value == ""
            or (key not in secrets and not any(s in key.lower() for s in _SECRET_KEYS))
        ):
            shown[key] = value
        elif key in where and opened is not None:
            shown[key] = opened[key] if editable else mask_url(str(opened[key]))
        else:
            shown[key] = MASK
    return shown


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


def _target_out(request: Request, who: Principal, row: dict[str, Any]) -> TargetOut:
    editable = _may_edit_target(who, row)
    config = _shown_config(_box(request), row["kind"], row["config"] or {}, editable)
    return TargetOut(**dict(row, config=config, editable=editable))


@router.get(
    "/api/v1/notify-targets",
    response_model=list[TargetOut],
    summary="Where notifications go (secrets masked)",
)
def list_targets(request: Request, db: DbConn, who: CurrentUser) -> list[TargetOut]:
    rows = db.execute(
        text(
            f"SELECT {_TARGET_COLUMNS} FROM notify_targets "
            "WHERE CAST(:homes AS bigint[]) IS NULL OR home_id = ANY(CAST(:homes AS bigint[])) "
            "ORDER BY id"
        ),
        {"homes": visible_homes(who)},
    ).mappings()
    return [_target_out(request, who, dict(r)) for r in rows]


def _config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_config(kind, config)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"config: {exc}") from None


def _is_mask(value: Any) -> bool:
    return isinstance(value, str) and (value == MASK or value.endswith("/" + MASK))


def _with_kept_secrets(
    body: TargetIn, current: dict[str, Any] | None, stored: dict[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """The validated config to store, masks replaced by the stored secrets; and the names of
    the secrets that were entered anew. 422 when a mask cannot be honoured."""
    sent = dict(body.config)
    kept = sorted(k for k, v in sent.items() if _is_mask(v))
    secrets = _secret_fields(body.kind)
    entered = sorted(k for k in secrets if k in sent and k not in kept and sent[k] is not None)
    if not kept:
        return _config(body.kind, sent), entered
    if current is None:
        raise HTTPException(
            status_code=422, detail=f"config.{kept[0]}: there is no stored secret; enter a value"
        )
    if stored is None:
        raise HTTPException(
            status_code=422,
            detail=f"config.{kept[0]}: the stored secret can no longer be read; enter it again",
        )
    for key in kept:
        if key not in secrets or stored.get(key) is None:
            raise HTTPException(
                status_code=422,
                detail=f"config.{key}: there is no stored secret to keep; enter a value",
            )
        sent[key] = stored[key]
    config = _config(body.kind, sent)
    if body.kind != current["kind"]:
        changed = ["kind"]
    else:
        changed = [f for f in destination_fields(body.kind) if config.get(f) != stored.get(f)]
    if changed:
        raise HTTPException(
            status_code=422,
            detail=f"config.{', config.'.join(kept)}: the destination changed "
            f"({', '.join(changed)}); enter the secret again (a kept secret is only ever sent "
            "where it was entered)",
        )
    return config, entered


def _destination_ok(
    request: Request,
    who: Principal,
    kind: str,
    config: dict[str, Any],
    current: dict[str, Any] | None,
    stored: dict[str, Any] | None,
) -> bool:
    """Check where the target points; answers whether it may be a private address at send
    time (``private_ok``): when an admin set the destination."""
    if who.role is Role.admin:
        return True
    if (
        current is not None
        and stored is not None
        and current["private_ok"]
        and current["kind"] == kind
        and destination(kind, config) == destination(kind, stored)
    ):
        return True  # a homeowner changed something else of what an admin set up
    if request.app.state.settings.notify_allow_private_targets:
        return False
    try:
        check_target(kind, config, allow_private=False)
    except UnsafeDestination as exc:
        raise HTTPException(
            status_code=422,
            detail=f"config: the target must be reachable at a public address: {exc}",
        ) from None
    return False


def _save_target(
    db: Connection,
    box: SecretBox,
    body: TargetIn,
    config: dict[str, Any],
    target_id: int | None,
    *,
    owner_editable: bool,
    private_ok: bool,
    created_by: str,
) -> int:
    values = body.model_dump(exclude={"config", "owner_editable"})
    values["config"] = json.dumps(seal_config(box, body.kind, config))
    values["min_severity"] = body.min_severity.value
    values["owner_editable"] = owner_editable
    values["private_ok"] = private_ok
    values["created_by"] = created_by
    if target_id is None:
        sql = (
            "INSERT INTO notify_targets (name, kind, home_id, config, min_severity, quiet_start, "
            "quiet_end, quiet_tz, repeat_interval_s, group_wait_s, enabled, owner_editable, "
            "private_ok, created_by) VALUES (:name, :kind, :home_id, CAST(:config AS jsonb), "
            ":min_severity, :quiet_start, :quiet_end, :quiet_tz, :repeat_interval_s, "
            ":group_wait_s, :enabled, :owner_editable, :private_ok, :created_by) RETURNING id"
        )
    else:
        values["id"] = target_id
        sql = (
            "UPDATE notify_targets SET name = :name, kind = :kind, config = CAST(:config AS "
            "jsonb), min_severity = :min_severity, quiet_start = :quiet_start, quiet_end = "
            ":quiet_end, quiet_tz = :quiet_tz, repeat_interval_s = :repeat_interval_s, "
            "group_wait_s = :group_wait_s, enabled = :enabled, owner_editable = "
            ":owner_editable, private_ok = :private_ok WHERE id = :id RETURNING id"
        )
    return int(db.execute(text(sql), values).scalar_one())


def _audit_target(
    db: Connection, who: Principal, action: str, target_id: int, kind: str, config: dict, **more
) -> None:
    # The host only: a webhook's path and query may hold its token.
    audit.record(db, who, action, str(target_id), kind=kind, host=target_host(kind, config), **more)


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
    config, entered = _with_kept_secrets(body, None, None)
    private_ok = _destination_ok(request, who, body.kind, config, None, None)
    # A homeowner's own target is theirs; an admin's is the admin's unless they say otherwise.
    owner_editable = who.role is Role.homeowner or bool(body.owner_editable)
    _check_quota(request, db, body.home_id, table="notify_targets")
    new_id = _save_target(
        db,
        _box(request),
        body,
        config,
        None,
        owner_editable=owner_editable,
        private_ok=private_ok,
        created_by=who.username,
    )
    _audit_target(
        db,
        who,
        "target.create",
        new_id,
        body.kind,
        config,
        name=body.name,
        home_id=body.home_id,
        owner_editable=owner_editable,
        secrets_entered=entered,
    )
    db.commit()
    return _target_out(request, who, _target(db, who, new_id))


@router.put(
    "/api/v1/notify-targets/{target_id}",
    response_model=TargetOut,
    summary="Replace a notification target",
    description=f"Send a secret back as {MASK!r} to keep it; refused (422) when the kind, "
    "host, port, URL or STARTTLS changes, so enter the secret again then. Homeowners may "
    "replace an admin's target for their home only when the admin allowed it.",
)
def replace_target(
    request: Request, target_id: RowId, body: TargetIn, db: DbConn, who: CurrentUser
) -> TargetOut:
    current = _target(db, who, target_id)
    if not _may_edit_target(who, current) or body.home_id != current["home_id"]:
        raise HTTPException(status_code=403, detail="forbidden")
    owner_editable = bool(current["owner_editable"])
    if body.owner_editable is not None and body.owner_editable != owner_editable:
        if who.role is not Role.admin:
            raise HTTPException(status_code=403, detail="only admins change owner_editable")
        owner_editable = body.owner_editable
    box = _box(request)
    try:
        stored: dict[str, Any] | None = open_config(box, current["kind"], current["config"] or {})
    except SecretError:
        stored = None
    config, entered = _with_kept_secrets(body, current, stored)
    private_ok = _destination_ok(request, who, body.kind, config, current, stored)
    _save_target(
        db,
        box,
        body,
        config,
        target_id,
        owner_editable=owner_editable,
        private_ok=private_ok,
        created_by=current["created_by"] or "",
    )
    before = {k: current[k] for k in ("name", "kind", "min_severity", "enabled")}
    after = {"name": body.name, "kind": body.kind, "min_severity": body.min_severity.value}
    changed = sorted(k for k, v in after.items() if before[k] != v)
    if stored is None or destination(body.kind, config) != destination(current["kind"], stored):
        changed.append("destination")
    if before["enabled"] != body.enabled:
        changed.append("enabled")
    _audit_target(
        db,
        who,
        "target.replace",
        target_id,
        body.kind,
        config,
        changed=changed,
        owner_editable=owner_editable,
        secrets_entered=entered,
    )
    db.commit()
    return _target_out(request, who, _target(db, who, target_id))


@router.delete(
    "/api/v1/notify-targets/{target_id}", status_code=204, summary="Remove a notification target"
)
def delete_target(request: Request, target_id: RowId, db: DbConn, who: CurrentUser) -> None:
    current = _target(db, who, target_id)
    if not _may_edit_target(who, current):
        raise HTTPException(status_code=403, detail="forbidden")
    db.execute(text("DELETE FROM notify_targets WHERE id = :id"), {"id": target_id})
    try:
        config = open_config(_box(request), current["kind"], current["config"] or {})
    except SecretError:
        config = {}
    _audit_target(
        db, who, "target.delete", target_id, current["kind"], config, name=current["name"]
    )
    db.commit()
