"""What each device last reported about itself (spool depth, dropped readings, clock sync), and
the merge of the auth (0003) and alerts (0004) branches.

Revision ID: 0005
Revises: 0003, 0004
Create Date: 2026-11-23
"""

from alembic import op

revision = "0005"
down_revision = ("0003", "0004")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE device_presence ADD COLUMN report jsonb")
    op.execute("ALTER TABLE device_presence ADD COLUMN reported_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE device_presence DROP COLUMN reported_at")
    op.execute("ALTER TABLE device_presence DROP COLUMN report")
