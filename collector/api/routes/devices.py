"""Devices: the fleet, provisioning (credentials and the one-time bundle), home assignment,
credential rotation, decommissioning, pushed config and health.

Moving a device to another home (or out of its home) hands it over whole: the rules made for the
device are retired (disabled, taken out of evaluation, kept with their alerts' history), its
open alerts are closed and its detectors start afresh, all in the transaction of the move and in
the audit log; from then on only the new home's rules and the defaults apply to it, and its
former home sees nothing new of it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import Field
from sqlalchemy import Connection, text

from collector.alerts import lifecycle
from collector.api import policy, provisioning
from collector.api.deps import CurrentUser, DbConn, DevicePath, invalid_field
from collector.api.routes.readings import sensors_latest
from collector.api.schemas import (
    BundleSensor,
    DeviceConfig,
    DeviceCreate,
    DeviceHealth,
    DeviceOut,
    DeviceReport,
    DeviceStatus,
    DeviceUpdate,
    HomeId,
    ProvisioningBundle,
)
from collector.auth import audit
from collector.auth.credentials import new_device_secrets
from collector.auth.principal import Principal, Role

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

_COLUMNS = "device_id, name, home_id, status, created_at, last_seen, last_boot_id, last_seq"


def _device(db: Connection, device_id: str) -> DeviceOut:
    row = (
        db.execute(text(f"SELECT {_COLUMNS} FROM devices WHERE device_id = :d"), {"d": device_id})
        .mappings()
        .first()
    )
    if row is None:
        raise HTTPException(status_code=404, detail="device not found")
    return DeviceOut(**row)


def _check_home(db: Connection, home_id: int | None) -> None:
    if (
        home_id is not None
        and not db.execute(text("SELECT 1 FROM homes WHERE home_id = :h"), {"h": home_id}).first()
    ):
        raise invalid_field(("body", "home_id"), "home not found")


def _sensors(db: Connection, device_id: str) -> list[BundleSensor]:
    rows = db.execute(
        text(
            "SELECT sensor_id, label, rom_address FROM sensors WHERE device_id = :d "
            "ORDER BY sensor_id"
        ),
        {"d": device_id},
    ).all()
    return [
        BundleSensor(sensor_id=r.sensor_id, label=r.label, rom_address=r.rom_address) for r in rows
    ]


def _config(db: Connection, device_id: str) -> DeviceConfig:
    raw = db.execute(
        text("SELECT config FROM devices WHERE device_id = :d"), {"d": device_id}
    ).scalar_one()
    return DeviceConfig.model_validate(raw or {})


@router.get(
    "",
    response_model=list[DeviceOut],
    summary="Devices you may see, with their last-seen time",
    description="Admins and technicians see every device; homeowners the devices of their homes.",
)
def list_devices(
    db: DbConn,
    who: CurrentUser,
    home_id: HomeId | None = Query(default=None, description="Only devices of this home"),
    status: DeviceStatus | None = Query(default=None, description="Only devices in this state"),
) -> list[DeviceOut]:
    where, params = ["true"], dict[str, Any]()
    if who.role is Role.homeowner:
        where.append("home_id = ANY(:mine)")
        params["mine"] = sorted(who.home_ids)
    if home_id is not None:
        where.append("home_id = :home")
        params["home"] = home_id
    if status is not None:
        where.append("status = :status")
        params["status"] = status.value
    sql = f"SELECT {_COLUMNS} FROM devices WHERE {' AND '.join(where)} ORDER BY device_id"
    return [DeviceOut(**r) for r in db.execute(text(sql), params).mappings()]


@router.post(
    "",
    response_model=ProvisioningBundle,
    status_code=201,
    summary="Provision a device (technicians and admins)",
    description="Registers the device with its sensors and config, creates its MQTT password and "
    "ingest token, updates the broker's credentials and ACLs, and answers with the "
    "provisioning bundle. The secrets in it are shown only here: only hashes are stored. "
    "A device that sent data in development mode (without credentials) may be adopted; "
    "any other existing id is a conflict.",
    responses={409: {"description": "The device id is taken"}},
)
def create_device(
    body: DeviceCreate, db: DbConn, who: CurrentUser, request: Request
) -> ProvisioningBundle:
    settings = request.app.state.settings
    if body.device_id in (settings.mqtt_username, settings.broker_admin_username):
        raise HTTPException(status_code=409, detail="device id taken")
    _check_home(db, body.home_id)
    secrets = new_device_secrets()
    created = db.execute(
        text(
            "INSERT INTO devices AS d (device_id, name, home_id, mqtt_password_hash, token_hash, "
            "  credentials_rotated_at, config) "
            "VALUES (:d, :n, :h, :mp, :tk, now(), CAST(:c AS jsonb)) "
            "ON CONFLICT (device_id) DO UPDATE SET name = excluded.name, "
            "  home_id = excluded.home_id, mqtt_password_hash = excluded.mqtt_password_hash, "
            "  token_hash = excluded.token_hash, credentials_rotated_at = now(), "
            "  config = excluded.config "
            "WHERE d.mqtt_password_hash IS NULL AND d.status = 'active' "
            "RETURNING device_id"
        ),
        {
            "d": body.device_id,
            "n": body.name,
            "h": body.home_id,
            "mp": secrets.mqtt_password_hash,
            "tk": secrets.token_hash,
            "c": provisioning.config_payload(body.config).decode(),
        },
    ).first()
    if created is None:
        db.rollback()
        raise HTTPException(status_code=409, detail="device id taken")
    for sensor in body.sensors:
        db.execute(
            text(
                "INSERT INTO sensors (device_id, sensor_id, label, rom_address) "
                "VALUES (:d, :s, :l, :r) ON CONFLICT (device_id, sensor_id) "
                "DO UPDATE SET label = excluded.label, rom_address = excluded.rom_address"
            ),
            {
                "d": body.device_id,
                "s": sensor.sensor_id,
                "l": sensor.label,
                "r": sensor.rom_address,
            },
        )
    audit.record(db, who, "device.create", body.device_id, home_id=body.home_id)
    db.commit()
    provisioning.credentials_changed(
        request, body.device_id, mqtt_password=secrets.mqtt_password, created=True
    )
    provisioning.push_config(request, body.device_id, body.config)
    return provisioning.bundle(
        settings, body.device_id, secrets, _sensors(db, body.device_id), body.config
    )


@router.get("/{device_id}", response_model=DeviceOut, summary="One device")
def get_device(device_id: DevicePath, db: DbConn) -> DeviceOut:
    return _device(db, device_id)


class DeviceUpdated(DeviceOut):
    retired_rules: list[int] = Field(
        default_factory=list,
        description="Rules made for this device, retired because it moved to another home",
    )
    closed_alerts: list[int] = Field(
        default_factory=list, description="Its open alerts, closed because it moved"
    )


def _follow_move(
    db: Connection, who: Principal, device_id: str, old_home: int | None, new_home: int | None
) -> tuple[list[int], list[int]]:
    """Retire the device's own rules and close its open alerts (see module docstring); returns
    their ids. Detector state goes first: the engine locks state rows before alerts, and so
    does this, so the two wait for each other instead of deadlocking."""
    reason = f"device {device_id} moved from home {old_home} to home {new_home}"
    db.execute(text("DELETE FROM alert_state WHERE device_id = :d"), {"d": device_id})
    rules = db.execute(
        text(
            "UPDATE alert_rules SET enabled = false, retired_at = now(), retired_reason = :r, "
            "updated_at = now() WHERE device_id = :d AND retired_at IS NULL "
            "RETURNING id, name, home_id"
        ),
        {"d": device_id, "r": reason},
    ).all()
    for rule in sorted(rules):
        audit.record(
            db,
            who,
            "rule.retire",
            str(rule.id),
            name=rule.name,
            device_id=device_id,
            from_home=old_home,
            to_home=new_home,
        )
    open_alerts = db.execute(
        text(
            "SELECT id, state FROM alerts WHERE device_id = :d AND state <> 'resolved' "
            "ORDER BY id FOR UPDATE"
        ),
        {"d": device_id},
    ).all()
    # The lifecycle works on psycopg cursors; this one shares the request's transaction.
    with db.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
        for alert_id, state in open_alerts:
            cur.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = now(), updated_at = now() "
                "WHERE id = %s",
                (alert_id,),
            )
            lifecycle.history(cur, alert_id, state, "resolved", actor=who.username, note=reason)
            # Nothing more of this device goes to its former home's targets.
            cur.execute(
                "UPDATE alert_outbox SET status = 'cancelled' "
                "WHERE alert_id = %s AND status = 'queued'",
                (alert_id,),
            )
            lifecycle.announce(cur, "resolved", lifecycle.alert_payload(cur, alert_id))
    return sorted(r.id for r in rules), [a.id for a in open_alerts]


@router.patch(
    "/{device_id}",
    response_model=DeviceUpdated,
    summary="Rename a device or assign it to a home (admins)",
    description="Moving a device to another home retires the rules made for it and closes its "
    "open alerts (listed in the answer and in the audit log): the new home's rules and the "
    "defaults apply from then on.",
)
def update_device(
    device_id: DevicePath, body: DeviceUpdate, db: DbConn, who: CurrentUser
) -> DeviceUpdated:
    changes = body.model_dump(include=body.model_fields_set)
    if "home_id" in changes:
        _check_home(db, changes["home_id"])
    # Locked: two moves of one device take turns, so each sees the home the other left.
    before = db.execute(
        text("SELECT home_id FROM devices WHERE device_id = :d FOR UPDATE"), {"d": device_id}
    ).first()
    if before is None:
        raise HTTPException(status_code=404, detail="device not found")
    for column, value in changes.items():
        # Column names come from the model's fields, never from the request's keys.
        db.execute(
            text(f"UPDATE devices SET {column} = :v WHERE device_id = :d"),
            {"v": value, "d": device_id},
        )
    retired: list[int] = []
    closed: list[int] = []
    if "home_id" in changes and changes["home_id"] != before.home_id:
        retired, closed = _follow_move(db, who, device_id, before.home_id, changes["home_id"])
        changes["from_home"] = before.home_id
    audit.record(
        db, who, "device.update", device_id, **changes, retired_rules=retired, closed_alerts=closed
    )
    db.commit()
    return DeviceUpdated(
        **_device(db, device_id).model_dump(), retired_rules=retired, closed_alerts=closed
    )


@router.post(
    "/{device_id}/rotate",
    response_model=ProvisioningBundle,
    summary="New credentials for a device (admins)",
    description="Replaces the MQTT password and the ingest token; the old ones stop working "
    "at once (the broker reloads and drops connections made with them). Answers with a new "
    "bundle, shown only here.",
)
def rotate_credentials(
    device_id: DevicePath, db: DbConn, who: CurrentUser, request: Request
) -> ProvisioningBundle:
    if _device(db, device_id).status is not DeviceStatus.active:
        raise HTTPException(status_code=409, detail="device is decommissioned")
    secrets = new_device_secrets()
    db.execute(
        text(
            "UPDATE devices SET mqtt_password_hash = :mp, token_hash = :tk, "
            "credentials_rotated_at = now() WHERE device_id = :d"
        ),
        {"mp": secrets.mqtt_password_hash, "tk": secrets.token_hash, "d": device_id},
    )
    audit.record(db, who, "device.rotate", device_id)
    db.commit()
    provisioning.credentials_changed(request, device_id, mqtt_password=secrets.mqtt_password)
    return provisioning.bundle(
        request.app.state.settings,
        device_id,
        secrets,
        _sensors(db, device_id),
        _config(db, device_id),
    )


@router.post(
    "/{device_id}/decommission",
    response_model=DeviceOut,
    summary="Decommission a device (admins)",
    description="Revokes its credentials (the broker drops it at once) and refuses its data "
    "from then on; its readings and history are kept.",
)
def decommission(
    device_id: DevicePath, db: DbConn, who: CurrentUser, request: Request
) -> DeviceOut:
    _device(db, device_id)
    db.execute(
        text(
            "UPDATE devices SET status = 'decommissioned', mqtt_password_hash = NULL, "
            "token_hash = NULL, decommissioned_at = coalesce(decommissioned_at, now()) "
            "WHERE device_id = :d"
        ),
        {"d": device_id},
    )
    audit.record(db, who, "device.decommission", device_id)
    db.commit()
    provisioning.credentials_changed(request, device_id, mqtt_password=None)
    provisioning.push_config(request, device_id, None)
    return _device(db, device_id)


@router.get(
    "/{device_id}/config",
    response_model=DeviceConfig,
    summary="The config pushed to a device (technicians and admins)",
)
def get_config(device_id: DevicePath, db: DbConn) -> DeviceConfig:
    _device(db, device_id)
    return _config(db, device_id)


@router.put(
    "/{device_id}/config",
    response_model=DeviceConfig,
    summary="Change a device's config (admins)",
    description="Stores the config and publishes it retained on `tw/v1/<device>/config`, so "
    "the device applies it now or when it next connects. Header `X-Config-Pushed` says "
    "whether it was handed to the broker at once.",
)
def put_config(
    device_id: DevicePath,
    body: DeviceConfig,
    db: DbConn,
    who: CurrentUser,
    request: Request,
    response: Response,
) -> DeviceConfig:
    if _device(db, device_id).status is not DeviceStatus.active:
        raise HTTPException(status_code=409, detail="device is decommissioned")
    db.execute(
        text("UPDATE devices SET config = CAST(:c AS jsonb) WHERE device_id = :d"),
        {"c": provisioning.config_payload(body).decode(), "d": device_id},
    )
    audit.record(db, who, "device.config", device_id, config=body.model_dump(exclude_none=True))
    db.commit()
    pushed = provisioning.push_config(request, device_id, body)
    response.headers["X-Config-Pushed"] = "true" if pushed else "false"
    return body


@router.get(
    "/{device_id}/health",
    response_model=DeviceHealth,
    summary="Device health: status, last seen, per-sensor faults, recent rejects",
)
def device_health(device_id: DevicePath, db: DbConn, who: CurrentUser) -> DeviceHealth:
    device = _device(db, device_id)
    sensors = sensors_latest(db, device_id)
    if not policy.sees_values(who, device.home_id):
        # Health is for whoever services the device; what it measured is for its home's people.
        sensors = [s.model_copy(update={"value": None}) for s in sensors]
    rejects = db.execute(
        text(
            "SELECT count(*) FROM ingest_rejects WHERE device_id = :d "
            "AND received_at > now() - interval '1 day'"
        ),
        {"d": device_id},
    ).scalar_one()
    presence = db.execute(
        text("SELECT state, report, reported_at FROM device_presence WHERE device_id = :d"),
        {"d": device_id},
    ).first()
    report = None
    if presence is not None:
        report = DeviceReport(
            online=presence[0] == "online", reported_at=presence[2], **(presence[1] or {})
        )
    return DeviceHealth(
        device_id=device_id,
        status=device.status,
        last_seen=device.last_seen,
        sensors=sensors,
        rejects_24h=int(rejects),
        report=report,
    )
