"""The notifier interface, what it is given to send, and the registry of channels by name."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from collector.notify.destinations import UnsafeDestination, connect_address


class NotifyError(Exception):
    """A delivery failed. ``retryable`` False means trying again cannot help (e.g. HTTP 404)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to one target: every queued notification of that target that was due
    together (grouping per home: a target belongs to one home or to all)."""

    delivery_id: str  # stable across retries: receivers can drop duplicates by it
    target_id: int
    target_name: str
    home_id: int | None
    config: dict[str, Any]  # with its secrets opened (see collector.notify.secrets)
    items: list[dict[str, Any]] = field(default_factory=list)  # alert payloads, oldest first
    # Whether the destination may be a private address (an admin set it, or the installation
    # allows it); otherwise the notifier refuses to connect to anything but a global address.
    allow_private: bool = False

    @property
    def title(self) -> str:
        if len(self.items) == 1:
            item = self.items[0]
            return f"{_LABEL.get(item['event'], item['event'].upper())}: {item['message']}"
        return f"{len(self.items)} alert updates"

    @property
    def text(self) -> str:
        """Plain text, one line per alert, as Slack and e-mail show it."""
        lines = [
            f"{_LABEL.get(i['event'], i['event'].upper())} [{i['severity']}] {i['message']}"
            for i in self.items
        ]
        return "\n".join(lines)


_LABEL = {"firing": "ALERT", "repeat": "STILL FIRING", "resolved": "RESOLVED"}


class Notifier(ABC):
    """Sends a :class:`Delivery`; raises :class:`NotifyError` when it did not arrive.

    ``secret_fields`` are the config fields stored encrypted and never shown back;
    ``destination_fields`` say where the secrets go: changing any of them requires entering the
    secrets again (so a kept secret is only ever sent where it was entered)."""

    kind: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    secret_fields: ClassVar[tuple[str, ...]] = ()
    destination_fields: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def send(self, delivery: Delivery) -> None: ...


def pinned_address(host: str | None, port: int | None, delivery: Delivery) -> str:
    """The checked address a notifier connects to for ``host`` (see notify/destinations.py)."""
    try:
        return connect_address(host, port, allow_private=delivery.allow_private)
    except UnsafeDestination as exc:
        raise NotifyError(f"destination refused: {exc}", retryable=exc.retryable) from None


# Imported on first use: a deployment without e-mail never loads smtplib's friends, and a
# broken optional channel cannot stop the others.
_CHANNELS = {
    "webhook": "collector.notify.webhook:WebhookNotifier",
    "smtp": "collector.notify.smtp:SmtpNotifier",
    "mqtt": "collector.notify.mqtt:MqttNotifier",
    "homeassistant": "collector.notify.homeassistant:HomeAssistantNotifier",
}
KINDS = tuple(_CHANNELS)


def notifier_class(kind: str) -> type[Notifier]:
    try:
        module, name = _CHANNELS[kind].split(":")
    except KeyError:
        raise NotifyError(f"unknown notifier kind {kind!r}", retryable=False) from None
    cls: type[Notifier] = getattr(importlib.import_module(module), name)
    return cls


def validate_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The target's config with defaults, or ValueError naming what is wrong."""
    try:
        model = notifier_class(kind).Config
    except NotifyError as exc:
        raise ValueError(str(exc)) from None
    try:
        return model.model_validate(config).model_dump(mode="json")
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(reasons) from None
