"""Where a notification target may point, checked when a target is saved and again right before
every connection a notifier makes.

A target makes the collector open connections (HTTP, SMTP, MQTT) to an address someone typed
in. Left unchecked, a homeowner could point a webhook at the collector's own network (the
database, the metrics endpoint, a cloud metadata service) and use the collector to reach it.
So a homeowner's target must resolve to global addresses only; admins, and installations that
run next to their users' brokers (``notify_allow_private_targets``), may use any.

Checking a name only when the target is saved is not enough: its DNS record can change between
the check and the send (DNS rebinding). So :func:`connect_address` resolves the name at send
time, refuses the lot if *any* address is not global, and hands back the address that was
checked; the notifiers connect to that address (not to the name again), so what was checked is
what is reached.

"Global" is decided here rather than by :attr:`ipaddress.IPv4Address.is_global` alone, which
(on the Python versions we support) calls NAT64 ``64:ff9b::7f00:1``, IPv4-compatible
``::127.0.0.1``, 6to4 ``2002:7f00:1::`` and multicast global. Addresses that carry an IPv4
address inside them (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by that IPv4
address; Teredo and the other special-purpose ranges of the IANA registries are refused.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The name resolver; a module attribute so that tests can stand in for DNS.
getaddrinfo = socket.getaddrinfo

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# IANA special-purpose ranges that are not globally reachable, plus multicast and the reserved
# block (RFC 6890 and its updates). Checked on top of ``is_global``.
_REFUSED: tuple[_V4 | _V6, ...] = (
    _V4("0.0.0.0/8"),
    _V4("10.0.0.0/8"),
    _V4("100.64.0.0/10"),  # carrier-grade NAT
    _V4("127.0.0.0/8"),
    _V4("169.254.0.0/16"),  # link-local, cloud metadata services
    _V4("172.16.0.0/12"),
    _V4("192.0.0.0/24"),  # IETF protocol assignments
    _V4("192.0.2.0/24"),
    _V4("192.88.99.0/24"),  # 6to4 relay anycast
    _V4("192.168.0.0/16"),
    _V4("198.18.0.0/15"),
    _V4("198.51.100.0/24"),
    _V4("203.0.113.0/24"),
    _V4("224.0.0.0/4"),  # multicast
    _V4("240.0.0.0/4"),  # reserved, and the limited broadcast address
    _V6("::/128"),
    _V6("::1/128"),
    _V6("64:ff9b:1::/48"),  # local-use NAT64
    _V6("100::/64"),  # discard-only
    _V6("2001::/23"),  # IETF protocol assignments, Teredo (2001::/32) among them
    _V6("2001:db8::/32"),
    _V6("3fff::/20"),  # documentation
    _V6("5f00::/16"),  # segment routing
    _V6("fc00::/7"),  # unique local
    _V6("fe80::/10"),  # link-local
    _V6("fec0::/10"),  # site-local (deprecated, still routed by some stacks)
    _V6("ff00::/8"),  # multicast
)
_NAT64 = _V6("64:ff9b::/96")
_IPV4_COMPATIBLE = _V6("::/96")


class UnsafeDestination(ValueError):
    """The destination cannot be used; the message says why (safe to show the user)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable  # a failed lookup may pass; a private address will not


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_global_address(address: IPAddress) -> bool:
    """True only for an address anyone on the Internet could reach, after unwrapping."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_global_address(inner)
    if any(address in net for net in _REFUSED if net.version == address.version):
        return False
    return address.is_global


def parse_address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id


def resolve(host: str, port: int | None = None) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal address resolves to itself)."""
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeDestination(f"{host} cannot be resolved ({exc})", retryable=True) from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = parse_address(str(info[4][0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeDestination(f"{host} resolves to no address", retryable=True)
    return addresses


def connect_address(host: str | None, port: int | None, *, allow_private: bool) -> str:
    """The address to connect to for ``host``: resolved now, every address checked (unless
    private destinations are allowed), the first one returned for the caller to pin."""
    if not host:
        raise UnsafeDestination("the target has no host")
    addresses = resolve(host, port)
    if not allow_private:
        refused = [str(a) for a in addresses if not is_global_address(a)]
        if refused:
            raise UnsafeDestination(
                f"{host} resolves to an address that is not public ({', '.join(refused[:3])})"
            )
    return str(addresses[0])


def target_host(kind: str, config: dict[str, Any]) -> str | None:
    if kind == "webhook":
        return urlsplit(str(config.get("url", ""))).hostname
    host = config.get("host")
    return str(host) if host else None


def target_port(kind: str, config: dict[str, Any]) -> int | None:
    if kind == "webhook":
        parts = urlsplit(str(config.get("url", "")))
        try:
            return parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
    port = config.get("port")
    return int(port) if isinstance(port, int) else None


def check_target(kind: str, config: dict[str, Any], *, allow_private: bool) -> None:
    """Raise :class:`UnsafeDestination` when the target's host may not be used now."""
    connect_address(
        target_host(kind, config), target_port(kind, config), allow_private=allow_private
    )


def is_public(host: str | None) -> bool:
    """True when every address ``host`` resolves to is globally routable."""
    try:
        connect_address(host, None, allow_private=False)
    except UnsafeDestination:
        return False
    return True
