"""Who may call what: one table for the whole API, applied by :func:`collector.api.deps.authorize`.

Keys are ``(method, route path)``; a route missing here is refused for everyone (a test checks
that every route has a rule). Object-level checks (a homeowner sees only their homes' devices)
come on top, in the same dependency.

Measured values follow one data policy, decided here (:func:`sees_values`) and applied by every
route that could show them: readings and latest values, the per-sensor values on a device's
health page, the values and messages of alerts (lists, history, the live stream) and backtests
over stored history. They belong to a home's people and to admins. Technicians service devices
(provisioning, health, faults, alerts' states) without seeing what the devices measure.
"""

from __future__ import annotations

from typing import Any

from collector.auth.principal import Principal, Role

PUBLIC: frozenset[Role] = frozenset()  # no user needed (health, login, device ingest)
ADMIN = frozenset({Role.admin})
STAFF = frozenset({Role.admin, Role.technician})
OWNERS = frozenset({Role.admin, Role.homeowner})  # data of a home: its people and admins
ANYONE = frozenset(Role)
# Routes that answer with measured values; the object-level part is :func:`sees_values`.
READINGS = OWNERS

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
    ("POST", "/api/v1/auth/logout"): ANYONE,
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
    ("GET", _DEVICE + "/readings"): READINGS,
    ("GET", _DEVICE + "/sensors/{sensor_id}/readings"): READINGS,
    ("GET", _DEVICE + "/latest"): READINGS,
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
    # A backtest answers with alerts computed from stored readings: a readings query.
    ("POST", "/api/v1/alert-rules/backtest"): READINGS,
    ("GET", "/api/v1/alert-rules/{rule_id}"): ANYONE,
    ("PATCH", "/api/v1/alert-rules/{rule_id}"): OWNERS,
    ("DELETE", "/api/v1/alert-rules/{rule_id}"): OWNERS,
    ("GET", "/api/v1/notify-targets"): ANYONE,
    ("POST", "/api/v1/notify-targets"): OWNERS,
    ("PUT", "/api/v1/notify-targets/{target_id}"): OWNERS,
    ("DELETE", "/api/v1/notify-targets/{target_id}"): OWNERS,
}


def sees_values(who: Principal, home_id: int | None) -> bool:
    """Whether ``who`` may see what the devices of ``home_id`` measured (see module docstring).
    Devices without a home are staff business: only admins see their values."""
    if who.role is Role.admin:
        return True
    return who.role is Role.homeowner and home_id is not None and home_id in who.home_ids


# Alert kinds whose messages quote measured values ("Freezer is -4.2 °C, above -10 °C"); the
# others (offline, stale, probe fault) speak of time and faults only.
_VALUE_KINDS = frozenset({"threshold", "rate", "anomaly"})


def alert_for(who: Principal, alert: dict[str, Any]) -> dict[str, Any]:
    """An alert (or alert event) as ``who`` may see it: without its value, and for the kinds
    whose message quotes values with a message that does not, unless :func:`sees_values`."""
    if sees_values(who, alert.get("home_id")):
        return alert
    out = dict(alert, value=None)
    if alert.get("kind") in _VALUE_KINDS:
        where = alert.get("device_id", "")
        if alert.get("sensor_id"):
            where += f"/{alert['sensor_id']}"
        out["message"] = f"{alert['kind']} alert on {where} (values are for the home's people)"
    return out


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
