"""Sessions that end, and login throttling without stored user names.

- ``users.session_generation``: every access token carries the generation it was issued in and
  is refused once it differs. A trigger bumps it whenever a password hash changes or an account
  is disabled, whoever makes the change (API, command line, another instance), so a password
  change or reset ends every older session. "Log out everywhere" bumps it too.
- ``revoked_tokens``: access tokens ended one by one (logout), kept until they would have expired.
- ``login_failures`` is rebuilt: one row per user name, address and (user name, address) pair,
  with a failure count that one row lock updates (shared by every instance, no race between
  concurrent guesses). Rows are keyed by an HMAC of the text, never the text itself: people type
  their password into the user-name field, and the old table kept whatever was typed there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE users ADD COLUMN session_generation bigint NOT NULL DEFAULT 1")
    op.execute(
        """
        CREATE FUNCTION users_end_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.password_hash IS DISTINCT FROM OLD.password_hash
               OR (NEW.disabled AND NOT OLD.disabled) THEN
                NEW.session_generation := OLD.session_generation + 1;
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER users_end_sessions BEFORE UPDATE OF password_hash, disabled ON users "
        "FOR EACH ROW EXECUTE FUNCTION users_end_sessions()"
    )
    op.execute(
        """
        CREATE TABLE revoked_tokens (
            jti        text        PRIMARY KEY,
            user_id    bigint      NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at)")
    # The old rows hold user names as typed (sometimes passwords): they go with the table.
    op.execute("DROP TABLE login_failures")
    op.execute(
        """
        CREATE TABLE login_failures (
            scope        text        NOT NULL CHECK (scope IN ('address', 'pair', 'user')),
            key          text        NOT NULL,
            failures     integer     NOT NULL DEFAULT 0,
            last_failure timestamptz NOT NULL DEFAULT '-infinity',
            known_until  timestamptz,
            expires_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, key)
        )
        """
    )
    op.execute("CREATE INDEX login_failures_expiry ON login_failures (expires_at)")


def downgrade() -> None:
    op.execute("DROP TABLE login_failures")
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
    op.execute("DROP TABLE revoked_tokens")
    op.execute("DROP TRIGGER users_end_sessions ON users")
    op.execute("DROP FUNCTION users_end_sessions()")
    op.execute("ALTER TABLE users DROP COLUMN session_generation")
