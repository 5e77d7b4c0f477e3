"""Collector commands an operator runs outside `serve`."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from tests.collector.auth.stack import MqttProbe
from tests.support.broker import MosquittoBroker, init_dynsec
from tests.support.processes import REPO, thermowatch_command


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        thermowatch_command("collector", *args),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_sync_broker_writes_the_files_the_broker_needs_before_it_starts(
    tmp_path: Path, fresh_database_url: str
) -> None:
    password = secrets.token_urlsafe(16)
    env = {
        "THERMOWATCH_DATABASE_URL": fresh_database_url,
        "THERMOWATCH_SECRET_KEY": secrets.token_urlsafe(32),
        "THERMOWATCH_MQTT_USERNAME": "tw-collector",
        "THERMOWATCH_MQTT_PASSWORD": password,
        "THERMOWATCH_BROKER_PASSWORD_FILE": str(tmp_path / "passwd"),
        "THERMOWATCH_BROKER_ACL_FILE": str(tmp_path / "acl"),
    }
    result = run(["sync-broker"], env)
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "passwd").read_text()
    assert passwd.startswith("tw-collector:$7$")  # Mosquitto's hash format, never the password
    assert password not in passwd
    assert "user tw-collector" in (tmp_path / "acl").read_text()


def test_sync_broker_without_file_settings_is_a_clear_error(fresh_database_url: str) -> None:
    result = run(["sync-broker"], {"THERMOWATCH_DATABASE_URL": fresh_database_url})
    assert result.returncode == 2
    assert "THERMOWATCH_BROKER_PASSWORD_FILE" in result.stderr
    assert "THERMOWATCH_BROKER_BACKEND=dynsec" in result.stderr


def test_sync_broker_with_the_dynamic_security_plugin_creates_the_collector_account(
    tmp_path: Path, fresh_database_url: str
) -> None:
    admin_password, collector_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    state = tmp_path / "dynsec.json"
    init_dynsec(state, "broker-admin", admin_password)
    broker = MosquittoBroker(tmp_path / "broker", allow_anonymous=False, dynsec_config=state)
    broker.start()
    try:
        result = run(
            ["sync-broker"],
            {
                "THERMOWATCH_DATABASE_URL": fresh_database_url,
                "THERMOWATCH_SECRET_KEY": secrets.token_urlsafe(32),
                "THERMOWATCH_BROKER_BACKEND": "dynsec",
                "THERMOWATCH_BROKER_ADMIN_USERNAME": "broker-admin",
                "THERMOWATCH_BROKER_ADMIN_PASSWORD": admin_password,
                "THERMOWATCH_MQTT_PORT": str(broker.port),
                "THERMOWATCH_MQTT_USERNAME": "tw-collector",
                "THERMOWATCH_MQTT_PASSWORD": collector_password,
            },
        )
        assert result.returncode == 0, result.stderr
        assert "broker in sync (dynsec)" in result.stdout
        # The collector's account now exists at the broker, and only with its password.
        probe = MqttProbe(broker.port, "tw-collector", collector_password).connect()
        assert probe.accepted
        probe.close()
        wrong = MqttProbe(broker.port, "tw-collector", "not-the-password").connect()
        assert not wrong.accepted
        wrong.close()
    finally:
        broker.stop()
