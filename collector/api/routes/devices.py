"""Devices: the fleet and when each device was last heard from."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import text

from collector.api.deps import DbConn
from collector.api.schemas import DeviceOut

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

_COLUMNS = "device_id, name, created_at, last_seen, last_boot_id, last_seq"


@router.get("", response_model=list[DeviceOut], summary="All devices with their last-seen time")
def list_devices(db: DbConn) -> list[DeviceOut]:
    rows = db.execute(text(f"SELECT {_COLUMNS} FROM devices ORDER BY device_id")).mappings()
    return [DeviceOut(**r) for r in rows]


@router.get("/{device_id}", response_model=DeviceOut, summary="One device")
def get_device(device_id: str, db: DbConn) -> DeviceOut:
    row = (
        db.execute(text(f"SELECT {_COLUMNS} FROM devices WHERE device_id = :d"), {"d": device_id})
        .mappings()
        .first()
    )
    if row is None:
        raise HTTPException(status_code=404, detail="device not found")
    return DeviceOut(**row)
