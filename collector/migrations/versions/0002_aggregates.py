"""Continuous aggregates (1 minute, 1 hour) where the Timescale-licensed edition is installed.

The Apache edition has no continuous aggregates; there the query API computes the same buckets
with ``time_bucket`` over raw readings, so this migration does nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_VIEWS = (("readings_1m", "1 minute"), ("readings_1h", "1 hour"))


def _full_edition() -> bool:
    return op.get_bind().execute(text("SHOW timescaledb.license")).scalar() == "timescale"


def upgrade() -> None:
    if not _full_edition():
        return
    for view, width in _VIEWS:
        # Probe faults carry no value; count them separately so a bucket's quality stays visible.
        op.execute(
            f"""
            CREATE MATERIALIZED VIEW {view}
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(interval '{width}', time) AS bucket, device_id, sensor_id,
                   avg(value) AS avg, min(value) AS min, max(value) AS max,
                   last(value, time) FILTER (WHERE value IS NOT NULL) AS last,
                   count(value) AS n, count(*) - count(value) AS faults
            FROM readings
            GROUP BY bucket, device_id, sensor_id
            WITH NO DATA
            """
        )
    op.execute(
        "SELECT add_continuous_aggregate_policy('readings_1m', start_offset => interval '3 hours',"
        " end_offset => interval '1 minute', schedule_interval => interval '1 minute')"
    )
    op.execute(
        "SELECT add_continuous_aggregate_policy('readings_1h', start_offset => interval '3 days',"
        " end_offset => interval '1 hour', schedule_interval => interval '30 minutes')"
    )


def downgrade() -> None:
    for view, _ in _VIEWS:
        op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {view}")
