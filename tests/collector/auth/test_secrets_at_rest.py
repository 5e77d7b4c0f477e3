"""Passwords, API keys, device passwords and tokens are never stored or logged in clear."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tests.collector.auth.stack import Stack


def _database_text(url: str) -> str:
    """Every row of every table in the schema, as JSON text."""
    parts = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()
        for (table,) in tables:
            query = sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(sql.Identifier(table))
            parts += [row[0] for row in conn.execute(query)]
    return "\n".join(parts)


def test_no_secret_is_stored_or_logged_in_clear(stack: Stack) -> None:
    home = stack.new_home("Secrets")
    name, _ = stack.new_user("homeowner", [home])
    stack.provision("secret-dev", home)
    with stack.admin() as http:
        rotated = http.post("/api/v1/devices/secret-dev/rotate").json()
        key = http.post("/api/v1/auth/api-keys", json={"name": "ci"}).json()["key"]
        # A failed login with a password-looking text must not leave it anywhere either.
        http.post("/api/v1/auth/login", json={"username": name, "password": "Wr0ng-Secret-99"})
    stack.cleartexts += [rotated["mqtt"]["password"], rotated["coap"]["token"], key]
    stack.cleartexts.append("Wr0ng-Secret-99")

    database = _database_text(stack.database_url)
    assert "secret-dev" in database and name in database  # the dump does hold the rows
    places = {
        "database": database,
        "collector log": stack.collector.log(),
        "broker log": stack.broker.log(),
        "broker password file": (stack.workdir / "passwd").read_text(),
        "broker ACL file": (stack.workdir / "acl").read_text(),
    }
    leaks = [
        (where, secret[:6] + "…")
        for secret in stack.cleartexts
        for where, text in places.items()
        if secret in text
    ]
    assert leaks == []
    assert len(stack.cleartexts) >= 8
