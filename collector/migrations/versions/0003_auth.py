"""Homes, users, API keys, device credentials and status, sensor labels, audit log, login failures.

Secrets are stored only as hashes: argon2 for user passwords, SHA-256 for random API keys and
device tokens (high-entropy secrets need no slow hash), and Mosquitto's PBKDF2-SHA512 format for
device MQTT passwords so any collector can regenerate the broker's password file from here.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE homes (
            home_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name       text        NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE users (
            user_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            username      text        NOT NULL UNIQUE,
            password_hash text        NOT NULL,
            role          text        NOT NULL
                          CHECK (role IN ('admin', 'technician', 'homeowner')),
            disabled      boolean     NOT NULL DEFAULT false,
            created_at    timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE user_homes (
            user_id bigint NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
            home_id bigint NOT NULL REFERENCES homes (home_id) ON DELETE CASCADE,
            PRIMARY KEY (user_id, home_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE api_keys (
            key_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id    bigint      NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
            name       text        NOT NULL,
            prefix     text        NOT NULL,     -- first characters, to recognise a key in lists
            key_hash   text        NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used  timestamptz,
            revoked_at timestamptz
        )
        """
    )
    op.execute(
        """
        ALTER TABLE devices
            ADD COLUMN home_id bigint REFERENCES homes (home_id) ON DELETE SET NULL,
            ADD COLUMN status text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'decommissioned')),
            ADD COLUMN mqtt_password_hash text,
            ADD COLUMN token_hash text UNIQUE,
            ADD COLUMN credentials_rotated_at timestamptz,
            ADD COLUMN decommissioned_at timestamptz,
            ADD COLUMN config jsonb NOT NULL DEFAULT '{"v": 1}'::jsonb
        """
    )
    op.execute("CREATE INDEX devices_home ON devices (home_id)")
    op.execute("ALTER TABLE sensors ADD COLUMN rom_address text")
    op.execute(
        """
        CREATE TABLE audit_log (
            audit_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            time       timestamptz NOT NULL DEFAULT now(),
            actor_id   bigint,
            actor      text        NOT NULL,
            action     text        NOT NULL,
            target     text,
            detail     jsonb       NOT NULL DEFAULT '{}'::jsonb
        )
        """
    )
    op.execute("CREATE INDEX audit_log_time ON audit_log (time DESC)")
    op.execute(
        """
        CREATE TABLE login_failures (
            time     timestamptz NOT NULL DEFAULT now(),
            username text        NOT NULL,
            address  text        NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX login_failures_user ON login_failures (username, time DESC)")
    op.execute("CREATE INDEX login_failures_address ON login_failures (address, time DESC)")


def downgrade() -> None:
    for table in ("login_failures", "audit_log", "api_keys", "user_homes", "users"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("ALTER TABLE sensors DROP COLUMN IF EXISTS rom_address")
    op.execute(
        """
        ALTER TABLE devices
            DROP COLUMN IF EXISTS home_id, DROP COLUMN IF EXISTS status,
            DROP COLUMN IF EXISTS mqtt_password_hash, DROP COLUMN IF EXISTS token_hash,
            DROP COLUMN IF EXISTS credentials_rotated_at, DROP COLUMN IF EXISTS decommissioned_at,
            DROP COLUMN IF EXISTS config
        """
    )
    op.execute("DROP TABLE IF EXISTS homes")
