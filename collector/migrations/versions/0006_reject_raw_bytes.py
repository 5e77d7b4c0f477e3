"""Rejected payloads are kept as bytes: a refused batch may hold any byte (CBOR is full of 0x00,
which text cannot store), and the record of what a device sent must survive whole.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE ingest_rejects ALTER COLUMN raw TYPE bytea USING convert_to(raw, 'UTF8')"
    )


def downgrade() -> None:
    # Text cannot hold every byte string: valid UTF-8 comes back as it was, anything else as
    # PostgreSQL's escape format (octal escapes for the bytes that are not printable ASCII).
    op.execute(
        """
        CREATE FUNCTION pg_temp.reject_raw_text(raw bytea) RETURNS text AS $$
        BEGIN
            RETURN convert_from(raw, 'UTF8');
        EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
            RETURN encode(raw, 'escape');
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "ALTER TABLE ingest_rejects ALTER COLUMN raw TYPE text USING pg_temp.reject_raw_text(raw)"
    )
