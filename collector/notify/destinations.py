"""Where a notification target may point.

A target makes the collector open connections (HTTP, SMTP, MQTT) to an address someone typed
in. Left unchecked, a homeowner could point a webhook at the collector's own network (the
database, the metrics endpoint, a cloud metadata service) and use the collector to reach it.
So a homeowner's target must resolve to public addresses only; admins, and installations that
run next to their users' brokers (``notify_allow_private_targets``), may use any.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit


def target_host(kind: str, config: dict[str, Any]) -> str | None:
    if kind == "webhook":
        return urlsplit(str(config.get("url", ""))).hostname
    host = config.get("host")
    return str(host) if host else None


def is_public(host: str | None) -> bool:
    """True when every address ``host`` resolves to is globally routable."""
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False  # what cannot be resolved now cannot be shown to be public
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_global for a in addresses
    )
