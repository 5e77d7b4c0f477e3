"""docker-compose.yml cannot run here (no Docker engine); check it names what the code expects."""

from __future__ import annotations

from pathlib import Path

import yaml

from collector.config import Settings

REPO = Path(__file__).resolve().parent.parent


def load() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_has_timescaledb_mosquitto_and_the_collector() -> None:
    services = load()["services"]
    assert set(services) >= {"timescaledb", "mosquitto", "collector"}
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["collector"]["build"] == "."
    assert (REPO / "Dockerfile").is_file()


def test_collector_environment_names_real_settings() -> None:
    services = load()["services"]
    env = services["collector"]["environment"]
    fields = {f"THERMOWATCH_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    assert "@timescaledb:5432/" in env["THERMOWATCH_DATABASE_URL"]
    assert env["THERMOWATCH_MQTT_HOST"] == "mosquitto"
    # The init job writes the very files the collector keeps in sync afterwards.
    assert services["broker-files"]["environment"] == env
    assert services["broker-files"]["command"] == ["thermowatch", "collector", "sync-broker"]


def test_broker_reads_the_files_the_collector_writes() -> None:
    services = load()["services"]
    env = services["collector"]["environment"]
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    assert f"password_file {env['THERMOWATCH_BROKER_PASSWORD_FILE']}" in conf
    assert f"acl_file {env['THERMOWATCH_BROKER_ACL_FILE']}" in conf
    assert f"pid_file {env['THERMOWATCH_BROKER_PID_FILE']}" in conf
    # Same volume on both sides, and the collector can signal the broker's process.
    assert "broker:/broker" in services["mosquitto"]["volumes"]
    assert "broker:/broker" in services["collector"]["volumes"]
    assert services["collector"]["pid"] == "service:mosquitto"
    depends = services["mosquitto"]["depends_on"]["broker-files"]["condition"]
    assert depends == "service_completed_successfully"


def _listeners(conf: str) -> dict[int, list[str]]:
    """Each listener's port and the lines that follow it, up to the next listener or blank."""
    listeners: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in conf.splitlines():
        if line.startswith("listener "):
            current = listeners.setdefault(int(line.split()[1]), [])
        elif not line.strip():
            current = None
        elif current is not None and not line.startswith("#"):
            current.append(line)
    return listeners


def test_devices_and_collectors_have_listeners_of_their_own() -> None:
    services = load()["services"]
    env = services["collector"]["environment"]
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    assert conf.splitlines()[0].startswith("#") and "per_listener_settings true" in conf
    listeners = _listeners(conf)
    collector_port = int(env["THERMOWATCH_MQTT_PORT"])
    device_port = int(env["THERMOWATCH_PUBLIC_MQTT_PORT"])
    assert set(listeners) == {collector_port, device_port}
    # A device's client id is its user name: it cannot take over anyone else's session.
    assert "use_username_as_clientid true" in listeners[device_port]
    assert f"password_file {env['THERMOWATCH_BROKER_PASSWORD_FILE']}" in listeners[device_port]
    # Only the collectors' account can log in where client ids are free.
    collector_file = env["THERMOWATCH_BROKER_COLLECTOR_PASSWORD_FILE"]
    assert f"password_file {collector_file}" in listeners[collector_port]
    assert "use_username_as_clientid true" not in listeners[collector_port]
    for lines in listeners.values():
        assert "allow_anonymous false" in lines
        assert f"acl_file {env['THERMOWATCH_BROKER_ACL_FILE']}" in lines
    published = [str(port).split(":")[-1] for port in services["mosquitto"]["ports"]]
    assert published == [str(device_port)]


def test_collector_names_at_the_broker_are_not_fixed() -> None:
    # Derived from the secret key when unset; a fixed one would be known to anyone who reads
    # this file, devices included.
    env = load()["services"]["collector"]["environment"]
    assert "THERMOWATCH_MQTT_CLIENT_ID" not in env
    assert "THERMOWATCH_MQTT_SHARED_GROUP" not in env


def test_no_credentials_are_built_in() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    # Every secret is a required variable the user must set.
    for secret in (
        "THERMOWATCH_DB_PASSWORD",
        "THERMOWATCH_SECRET_KEY",
        "THERMOWATCH_MQTT_PASSWORD",
    ):
        assert "${" + secret + ":?" in text
    db_env = load()["services"]["timescaledb"]["environment"]
    assert db_env["POSTGRES_PASSWORD"].startswith("${")


def test_mounted_mosquitto_config_exists_and_refuses_anonymous_clients() -> None:
    volumes = load()["services"]["mosquitto"]["volumes"]
    host_path = next(v.split(":")[0] for v in volumes if "mosquitto.conf" in v)
    conf = (REPO / host_path).read_text()
    assert "allow_anonymous false" in conf


def test_every_listener_and_the_api_use_tls_with_the_generated_certificate() -> None:
    services = load()["services"]
    env = services["collector"]["environment"]
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    for port, lines in _listeners(conf).items():
        assert "certfile /tls/server.crt" in lines, port
        assert "keyfile /tls/server.key" in lines, port
    # Devices and the collector verify the broker with the CA tls-init wrote; bundles carry it.
    assert env["THERMOWATCH_MQTT_TLS_CA_FILE"] == "/tls/ca.crt"
    assert env["THERMOWATCH_PUBLIC_MQTT_CA_FILE"] == "/tls/ca.crt"
    assert env["THERMOWATCH_HTTP_TLS_CERT_FILE"] == "/tls/server.crt"
    assert env["THERMOWATCH_PUBLIC_HTTP_URL"].startswith("https://")
    assert "tls-init" in " ".join(services["tls-files"]["command"])
    assert "tls:/tls:ro" in services["mosquitto"]["volumes"]
    assert "tls:/tls:ro" in services["collector"]["volumes"]
    assert services["mosquitto"]["depends_on"]["tls-files"]["condition"] == (
        "service_completed_successfully"
    )
