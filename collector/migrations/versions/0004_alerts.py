"""Alert rules, per-(rule, sensor) evaluation state, alerts with their history, notification
targets and the notification outbox.

Homes belong to the auth branch; these tables hold home ids without foreign keys (alerts keep
the home the device was in when they fired), so the two branches upgrade in any order.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = ("alerts",)
depends_on = None


def upgrade() -> None:
    # A rule with no home, device or sensor is a default for every sensor; a more specific rule
    # with the same name replaces it for the sensors it covers.
    op.execute(
        """
        CREATE TABLE alert_rules (
            id          bigserial   PRIMARY KEY,
            name        text        NOT NULL,
            kind        text        NOT NULL,
            home_id     bigint,
            device_id   text,
            sensor_id   text,
            params      jsonb       NOT NULL DEFAULT '{}',
            severity    text        NOT NULL DEFAULT 'warning',
            enabled     boolean     NOT NULL DEFAULT true,
            created_by  text,
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now(),
            CHECK (sensor_id IS NULL OR device_id IS NOT NULL)
        )
        """
    )
    op.execute("CREATE INDEX alert_rules_home ON alert_rules (home_id)")
    # Detector state of one rule on one sensor ('' for device-level rules), locked with
    # SELECT ... FOR UPDATE by whichever collector instance evaluates it.
    op.execute(
        """
        CREATE TABLE alert_state (
            rule_id      bigint      NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
            device_id    text        NOT NULL,
            sensor_id    text        NOT NULL,
            state        jsonb       NOT NULL DEFAULT '{}',
            last_time_ms bigint      NOT NULL DEFAULT 0,
            updated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (rule_id, device_id, sensor_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE alerts (
            id              bigserial   PRIMARY KEY,
            rule_id         bigint      NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
            device_id       text        NOT NULL,
            sensor_id       text        NOT NULL,
            home_id         bigint,
            kind            text        NOT NULL,
            severity        text        NOT NULL,
            state           text        NOT NULL,
            started_at      timestamptz NOT NULL,   -- measurement time the condition began
            fired_at        timestamptz,
            acknowledged_at timestamptz,
            acknowledged_by text,
            resolved_at     timestamptz,
            silenced_until  timestamptz,
            value           double precision,
            threshold       double precision,
            message         text        NOT NULL DEFAULT '',
            backfill        boolean     NOT NULL DEFAULT false,
            notified        boolean     NOT NULL DEFAULT false,
            flap_count      integer     NOT NULL DEFAULT 0,
            updated_at      timestamptz NOT NULL DEFAULT now(),
            CHECK (state IN ('pending', 'firing', 'acknowledged', 'resolved'))
        )
        """
    )
    # One open alert per (rule, sensor).
    op.execute(
        "CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_id, device_id, sensor_id) "
        "WHERE state <> 'resolved'"
    )
    op.execute("CREATE INDEX alerts_home_started ON alerts (home_id, started_at DESC)")
    op.execute(
        "CREATE INDEX alerts_key_resolved ON alerts (rule_id, device_id, sensor_id, id DESC)"
    )
    op.execute(
        """
        CREATE TABLE alert_history (
            id          bigserial   PRIMARY KEY,
            alert_id    bigint      NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
            at          timestamptz NOT NULL DEFAULT now(),
            measured_at timestamptz,
            from_state  text,
            to_state    text        NOT NULL,
            actor       text        NOT NULL DEFAULT 'engine',
            value       double precision,
            note        text
        )
        """
    )
    op.execute("CREATE INDEX alert_history_alert ON alert_history (alert_id, id)")
    # Where notifications go. A target without a home receives every home's alerts (an
    # installer's or an admin's channel); a home's target only that home's.
    op.execute(
        """
        CREATE TABLE notify_targets (
            id                bigserial   PRIMARY KEY,
            name              text        NOT NULL,
            kind              text        NOT NULL,
            home_id           bigint,
            config            jsonb       NOT NULL DEFAULT '{}',
            min_severity      text        NOT NULL DEFAULT 'info',
            quiet_start       time,
            quiet_end         time,
            quiet_tz          text        NOT NULL DEFAULT 'UTC',
            repeat_interval_s integer     NOT NULL DEFAULT 0,
            group_wait_s      double precision NOT NULL DEFAULT 0,
            enabled           boolean     NOT NULL DEFAULT true,
            created_at        timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE alert_outbox (
            id              bigserial   PRIMARY KEY,
            alert_id        bigint      NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
            target_id       bigint      NOT NULL REFERENCES notify_targets (id) ON DELETE CASCADE,
            event           text        NOT NULL,
            payload         jsonb       NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            attempts        integer     NOT NULL DEFAULT 0,
            status          text        NOT NULL DEFAULT 'queued',
            sent_at         timestamptz,
            last_error      text,
            CHECK (status IN ('queued', 'sent', 'failed', 'cancelled'))
        )
        """
    )
    op.execute(
        "CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE status = 'queued'"
    )
    op.execute("CREATE INDEX alert_outbox_alert ON alert_outbox (alert_id, target_id)")
    # Device presence from the MQTT status topic (retained; the last will says "offline").
    op.execute(
        """
        CREATE TABLE device_presence (
            device_id  text        PRIMARY KEY,
            state      text        NOT NULL,
            changed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    for table in (
        "device_presence",
        "alert_outbox",
        "notify_targets",
        "alert_history",
        "alerts",
        "alert_state",
        "alert_rules",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
