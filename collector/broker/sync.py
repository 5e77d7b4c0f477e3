"""Broker sync: render the password and ACL files from the database and make Mosquitto re-read
them (SIGHUP), without restarting it; on reload Mosquitto also disconnects clients whose
credentials are gone.

Devices and collectors are kept apart: the devices' password file is read by a listener with
``use_username_as_clientid`` (a device's client id is its user name, so it can take over no
one's session), the collectors' file by a listener of their own. Mosquitto's acl_file cannot
bind a client id to a user any other way, nor refuse a SUBSCRIBE; see docs/security.md.

Every change made through the API syncs at once; a periodic full sync picks up changes made by
other collector instances. A PostgreSQL advisory lock serialises the read-render-write-reload
steps across instances, so an older view of the devices never overwrites a newer one.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
from pathlib import Path

from sqlalchemy import Engine, text

from collector.auth import hashing
from collector.broker import files
from collector.config import Settings
from shared import protocol

log = logging.getLogger(__name__)

_LOCK_KEY = 0x7477_6272  # "twbr": one lock for every collector sharing the database


class BrokerSync:
    """Owns the generated files of one broker; safe to call from any thread."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        if not (settings.broker_password_file and settings.broker_acl_file):
            raise ValueError("broker_password_file and broker_acl_file are both needed")
        self.settings = settings
        self.engine = engine
        self.password_path = Path(settings.broker_password_file)
        self.collector_password_path = (
            Path(settings.broker_collector_password_file)
            if settings.broker_collector_password_file
            else None
        )
        self.acl_path = Path(settings.broker_acl_file)
        self._local = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0

    def _collector_account(self) -> files.BrokerAccount | None:
        s = self.settings
        if not (s.mqtt_username and s.mqtt_password):
            return None
        key = s.secret_key.get_secret_value().encode() if s.secret_key else b""
        return files.BrokerAccount(
            s.mqtt_username, hashing.stable_mosquitto_hash(s.mqtt_password, key)
        )

    def sync(self) -> bool:
        """Bring the files in line with the database; True when the broker was reloaded."""
        with self._local, self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            rows = conn.execute(
                text(
                    "SELECT device_id, mqtt_password_hash FROM devices "
                    "WHERE status = 'active' AND mqtt_password_hash IS NOT NULL"
                )
            ).all()
            collector = self._collector_account()
            # A device can never take the collector's name: ids are checked on creation.
            devices = [
                files.BrokerAccount(r.device_id, r.mqtt_password_hash)
                for r in rows
                if collector is None or r.device_id != collector.username
            ]
            collectors = [collector] if collector is not None else []
            if self.collector_password_path is not None:
                changed = files.write_if_changed(self.password_path, files.password_file(devices))
                changed = (
                    files.write_if_changed(
                        self.collector_password_path, files.password_file(collectors)
                    )
                    or changed
                )
            else:
                changed = files.write_if_changed(
                    self.password_path, files.password_file(devices + collectors)
                )
            acl = files.acl_file(
                [a.username for a in devices],
                collector.username if collector else None,
                self.settings.mqtt_shared_group,
            )
            changed = files.write_if_changed(self.acl_path, acl) or changed
            if changed:
                self._reload()
        return changed

    def warn_if_exposed(self) -> None:
        """Log what this configuration leaves open to a hostile device (docs/security.md)."""
        if self.collector_password_path is None:
            log.warning(
                "devices and collectors share one broker listener: a device can connect under "
                "another device's client id; set THERMOWATCH_BROKER_COLLECTOR_PASSWORD_FILE "
                "and give the devices' listener use_username_as_clientid (docs/security.md)"
            )
        if self.settings.mqtt_shared_group == protocol.SHARED_GROUP:
            log.warning(
                "the shared-subscription group is the well-known default: a device can join it "
                "and take a share of every device's readings; leave "
                "THERMOWATCH_MQTT_SHARED_GROUP unset to derive a secret one"
            )

    def _reload(self) -> None:
        s = self.settings
        if s.broker_pid_file:
            try:
                pid = int(Path(s.broker_pid_file).read_text().strip())
                os.kill(pid, signal.SIGHUP)
            except (OSError, ValueError) as exc:
                log.error("cannot signal the broker (pid file %s): %s", s.broker_pid_file, exc)
                return
        elif s.broker_reload_command:
            result = subprocess.run(
                shlex.split(s.broker_reload_command), capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                log.error("broker reload command failed: %s", result.stderr.strip()[:500])
                return
        else:
            log.warning("broker files changed but no pid file or reload command is configured")
            return
        self.reloads += 1
        log.info("broker credentials and ACLs reloaded")

    def sync_quietly(self) -> None:
        """Sync, logging failures: a database hiccup must not break the API call that asked."""
        try:
            self.sync()
        except Exception:
            log.exception("broker sync failed; the periodic sync will retry")

    # -- periodic full sync ------------------------------------------------------------------

    def start(self) -> None:
        """Sync every ``broker_sync_interval_s`` from now on (call :meth:`sync` first)."""
        self._thread = threading.Thread(target=self._run, name="broker-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.broker_sync_interval_s):
            self.sync_quietly()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
