"""One interface for the ways the collector keeps the broker's credentials and ACLs in step
with the devices: generated files (the default) or Mosquitto's dynamic-security plugin.

The API calls the ``device_*`` hooks after its transaction commits; ``full_sync`` runs at
start-up and then every ``broker_sync_interval_s``. Hooks never raise: a broker hiccup must not
fail the API call that changed the database, and the next full sync reports what is left over.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Engine

from collector.broker.sync import BrokerSync
from collector.config import Settings


class BrokerBackend(Protocol):
    """What the API and the service need from a broker back end."""

    def device_created(self, device_id: str, password: str) -> None: ...

    def device_rotated(self, device_id: str, password: str) -> None: ...

    def device_revoked(self, device_id: str) -> None: ...

    def full_sync(self) -> None: ...

    def sync(self) -> object:
        """Make the broker match the database now, raising on failure (``full_sync`` logs)."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class FilesBackend(BrokerSync):
    """The password and ACL files hold only hashes, so every change is a full re-render."""

    def device_created(self, device_id: str, password: str) -> None:
        self.sync_quietly()

    def device_rotated(self, device_id: str, password: str) -> None:
        self.sync_quietly()

    def device_revoked(self, device_id: str) -> None:
        self.sync_quietly()

    def full_sync(self) -> None:
        self.sync_quietly()


def make_backend(settings: Settings, engine: Engine) -> BrokerBackend | None:
    """The configured back end, or None when this collector does not manage the broker."""
    if settings.broker_backend == "dynsec":
        # Imported here: only installations that use the plugin need its client.
        from collector.broker.dynsec import DynsecBackend

        return DynsecBackend(settings, engine)
    if settings.broker_password_file and settings.broker_acl_file:
        backend = FilesBackend(settings, engine)
        backend.warn_if_exposed()
        return backend
    return None
