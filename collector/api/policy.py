"""Who may call what: one table for the whole API, applied by :func:`collector.api.deps.authorize`.

Keys are ``(method, route path)``; a route missing here is refused for everyone (a test checks
that every route has a rule). Object-level checks (a homeowner sees only their homes' devices)
come on top, in the same dependency.
"""

from __future__ import annotations

from collector.auth.principal import Role

PUBLIC: frozenset[Role] = frozenset()  # no user needed (health, login, device ingest)
ADMIN = frozenset({Role.admin})
STAFF = frozenset({Role.admin, Role.technician})
OWNERS = frozenset({Role.admin, Role.homeowner})  # data of a home: its people and admins
ANYONE = frozenset(Role)

_DEVICES = "/api/v1/devices"
_DEVICE = "/api/v1/devices/{device_id}"
_HOME = "/api/v1/homes/{home_id}"
_USER = "/api/v1/users/{user_id}"

RULES: dict[tuple[str, str], frozenset[Role]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("POST", "/api/v1/ingest"): PUBLIC,  # devices authenticate with their own token
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("GET", "/api/v1/auth/me"): ANYONE,
    ("PATCH", "/api/v1/auth/me"): ANYONE,
    ("GET", "/api/v1/auth/api-keys"): ANYONE,
    ("POST", "/api/v1/auth/api-keys"): ANYONE,
    ("DELETE", "/api/v1/auth/api-keys/{key_id}"): ANYONE,
    ("GET", _DEVICES): ANYONE,
    ("POST", _DEVICES): STAFF,
    ("GET", _DEVICE): ANYONE,
    ("PATCH", _DEVICE): ADMIN,
    ("GET", _DEVICE + "/health"): ANYONE,
    ("POST", _DEVICE + "/rotate"): ADMIN,
    ("POST", _DEVICE + "/decommission"): ADMIN,
    ("GET", _DEVICE + "/config"): STAFF,
    ("PUT", _DEVICE + "/config"): ADMIN,
    ("GET", _DEVICE + "/readings"): OWNERS,
    ("GET", _DEVICE + "/sensors/{sensor_id}/readings"): OWNERS,
    ("GET", _DEVICE + "/latest"): OWNERS,
    ("GET", "/api/v1/homes"): ANYONE,
    ("POST", "/api/v1/homes"): ADMIN,
    ("GET", _HOME): ANYONE,
    ("PATCH", _HOME): ADMIN,
    ("DELETE", _HOME): ADMIN,
    ("GET", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users"): ADMIN,
    ("GET", _USER): ADMIN,
    ("PATCH", _USER): ADMIN,
    ("DELETE", _USER): ADMIN,
    ("GET", "/api/v1/audit"): ADMIN,
    # Alerts: everyone sees (and acknowledges) the alerts of the homes they may see; rules and
    # notification targets are edited by admins and, for their own homes, by homeowners.
    ("GET", "/api/v1/alerts"): ANYONE,
    ("GET", "/api/v1/alerts/stream"): ANYONE,
    ("GET", "/api/v1/alerts/{alert_id}"): ANYONE,
    ("GET", "/api/v1/alerts/{alert_id}/history"): ANYONE,
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): ANYONE,
    ("POST", "/api/v1/alerts/{alert_id}/silence"): ANYONE,
    ("GET", "/api/v1/alert-rules"): ANYONE,
    ("POST", "/api/v1/alert-rules"): OWNERS,
    ("POST", "/api/v1/alert-rules/backtest"): ANYONE,
    ("GET", "/api/v1/alert-rules/{rule_id}"): ANYONE,
    ("PATCH", "/api/v1/alert-rules/{rule_id}"): OWNERS,
    ("DELETE", "/api/v1/alert-rules/{rule_id}"): OWNERS,
    ("GET", "/api/v1/notify-targets"): ANYONE,
    ("POST", "/api/v1/notify-targets"): OWNERS,
    ("PUT", "/api/v1/notify-targets/{target_id}"): OWNERS,
    ("DELETE", "/api/v1/notify-targets/{target_id}"): OWNERS,
}

# Served by FastAPI itself: the schema and its viewers describe the API, not its data.
_DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def rule_for(method: str, path: str | None) -> frozenset[Role] | None:
    if path is None:
        return None
    if path in _DOCS:
        return PUBLIC
    if method == "HEAD":
        method = "GET"
    return RULES.get((method, path))
