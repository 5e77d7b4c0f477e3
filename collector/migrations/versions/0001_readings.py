"""Readings hypertable, devices, sensors, detector events and ingest rejects.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET client_min_messages = warning")
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    op.execute(
        """
        CREATE TABLE devices (
            device_id    text PRIMARY KEY,
            name         text,
            created_at   timestamptz NOT NULL DEFAULT now(),
            last_seen    timestamptz,          -- arrival time of the latest batch
            last_boot_id text,
            last_seq     bigint
        )
        """
    )
    op.execute(
        """
        CREATE TABLE sensors (
            device_id    text NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
            sensor_id    text NOT NULL,
            label        text,
            first_seen   timestamptz NOT NULL DEFAULT now(),
            last_seen    timestamptz,          -- arrival time of the latest reading
            last_time    timestamptz,          -- measurement time of the latest valid reading
            last_value   double precision,
            last_fault_time timestamptz,       -- measurement time of the latest probe fault
            last_fault   text,
            PRIMARY KEY (device_id, sensor_id)
        )
        """
    )
    # One row per measurement. The unique key includes the time column (TimescaleDB requires
    # it) and is also the index for per-sensor time-range queries; ON CONFLICT DO NOTHING on it
    # makes every re-delivery harmless.
    op.execute(
        """
        CREATE TABLE readings (
            time       timestamptz      NOT NULL,
            device_id  text             NOT NULL,
            sensor_id  text             NOT NULL,
            value      double precision,            -- NULL when the probe reported a fault
            quality    smallint         NOT NULL DEFAULT 0,
            fault      text
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX readings_sensor_time ON readings (device_id, sensor_id, time DESC)"
    )
    op.execute(
        "SELECT create_hypertable('readings', 'time', chunk_time_interval => interval '1 day', "
        "create_default_indexes => false)"
    )
    op.execute(
        """
        CREATE TABLE device_events (
            time        timestamptz NOT NULL,
            device_id   text        NOT NULL,
            sensor_id   text        NOT NULL,
            kind        text        NOT NULL,
            value       double precision,
            detail      double precision,
            received_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (device_id, sensor_id, time, kind)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE ingest_rejects (
            id           bigserial   PRIMARY KEY,
            received_at  timestamptz NOT NULL DEFAULT now(),
            device_id    text,
            transport    text        NOT NULL,
            reason       text        NOT NULL,
            detail       text,
            record_index integer,
            raw          text
        )
        """
    )
    op.execute("CREATE INDEX ingest_rejects_received ON ingest_rejects (received_at DESC)")
    op.execute("CREATE INDEX ingest_rejects_device ON ingest_rejects (device_id, received_at DESC)")


def downgrade() -> None:
    for table in ("ingest_rejects", "device_events", "readings", "sensors", "devices"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
