"""Upstream transports behind one interface (:class:`Forwarder`), chosen by name from config.

The CoAP transport imports aiocoap (and asyncio machinery) only when selected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.forward.base import AckHandler, Backoff, ConfigHandler, Forwarder

if TYPE_CHECKING:
    from edge.config import EdgeSettings

__all__ = ["AckHandler", "Backoff", "ConfigHandler", "Forwarder", "build_forwarder"]


def build_forwarder(
    settings: EdgeSettings, boot_id: str, on_ack: AckHandler, on_config: ConfigHandler
) -> Forwarder:
    """The forwarder named by ``settings.transport``."""
    if settings.transport == "coap":
        from edge.forward.coap import CoapForwarder

        return CoapForwarder(settings, on_ack)
    from edge.forward.mqtt import MqttForwarder

    return MqttForwarder(settings, boot_id, on_ack, on_config)
