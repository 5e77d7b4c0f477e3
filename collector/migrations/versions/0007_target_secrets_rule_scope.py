"""Notification targets: secrets encrypted at rest, who may edit them, whether their destination
may be private; alert rules: retired when their device leaves the home they were made for.

Existing secrets are sealed with the server secret (``THERMOWATCH_SECRET_KEY``, handed over by
``collector migrate``/``serve``); without one they stay as they are until the target is saved
again (the collector reads both). Existing home targets are not editable by homeowners until an
admin allows it (who made them is not known), and must have public destinations at send time
until an admin saves them again; targets for every home (only admins make those) keep private
destinations. Device rules whose device already sits in another home are retired.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

import json
import logging

import sqlalchemy as sa
from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def _box():  # type: ignore[no-untyped-def]
    from collector.notify.secrets import box_for

    secret = context.config.attributes.get("secret_key")
    return box_for(secret) if secret else None


def _rewrite_secrets(seal: bool) -> None:
    from collector.notify.base import notifier_class
    from collector.notify.secrets import open_config, seal_config

    box = _box()
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, kind, config FROM notify_targets")).all()
    if rows and box is None:
        log.warning(
            "no THERMOWATCH_SECRET_KEY: the secrets of %d notification targets stay as they are "
            "until the targets are saved again",
            len(rows),
        )
        return
    for target_id, kind, config in rows:
        try:
            notifier_class(kind)
        except Exception:  # a kind this version does not know: nothing to seal
            continue
        opened = open_config(box, kind, dict(config or {}))
        new = seal_config(box, kind, opened) if seal else opened  # type: ignore[arg-type]
        conn.execute(
            sa.text("UPDATE notify_targets SET config = CAST(:c AS jsonb) WHERE id = :i"),
            {"c": json.dumps(new), "i": target_id},
        )


def upgrade() -> None:
    op.execute(
        "ALTER TABLE notify_targets "
        "ADD COLUMN owner_editable boolean NOT NULL DEFAULT false, "
        # Rows the API writes set it; a row an operator writes by hand is the operator's.
        "ADD COLUMN private_ok boolean NOT NULL DEFAULT true, "
        "ADD COLUMN created_by text"
    )
    op.execute("UPDATE notify_targets SET private_ok = false WHERE home_id IS NOT NULL")
    _rewrite_secrets(seal=True)

    op.execute(
        "ALTER TABLE alert_rules ADD COLUMN retired_at timestamptz, ADD COLUMN retired_reason text"
    )
    op.execute(
        """
        WITH moved AS (
            UPDATE alert_rules r SET enabled = false, retired_at = now(),
                   retired_reason = 'its device had moved to another home', updated_at = now()
            FROM devices d
            WHERE d.device_id = r.device_id AND r.home_id IS DISTINCT FROM d.home_id
            RETURNING r.id
        ), still_open AS (
            SELECT a.id, a.state FROM alerts a JOIN moved ON a.rule_id = moved.id
            WHERE a.state <> 'resolved'
        ), closed AS (
            UPDATE alerts a SET state = 'resolved', resolved_at = now(), updated_at = now()
            FROM still_open WHERE a.id = still_open.id
            RETURNING a.id, still_open.state AS from_state
        )
        INSERT INTO alert_history (alert_id, from_state, to_state, actor, note)
        SELECT id, from_state, 'resolved', 'upgrade',
               'rule retired: its device moved to another home'
        FROM closed
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE alert_rules DROP COLUMN retired_reason, DROP COLUMN retired_at")
    _rewrite_secrets(seal=False)
    op.execute(
        "ALTER TABLE notify_targets DROP COLUMN created_by, DROP COLUMN private_ok, "
        "DROP COLUMN owner_editable"
    )
