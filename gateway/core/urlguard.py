"""Judging URLs that callers give us, so they cannot reach our own network (SSRF): media URLs
(messaging/services/fetch.py) and webhook endpoints (gateway/outbox/endpoints.py).

Addresses are judged by allow-list: only global unicast addresses outside every block of IANA's
special-purpose address registries (and outside multicast, the deprecated site-local and
IPv4-compatible forms) are reached. Python's `is_global` is not used: it has been wrong for
IPv4-compatible and IPv4-translated forms, site-local and some IANA blocks. An IPv6 address that
stands for an IPv4 one (IPv4-mapped, NAT64's well-known prefix) is judged as that IPv4 address.
An operator may allow networks (MEDIA_FETCH_ALLOWED_NETWORKS, WEBHOOK_ALLOWED_NETWORKS).

The host is resolved once and every address it resolves to is checked; the connection then goes
to the checked address itself (`checked_target`: the name only travels as the Host header and as
TLS SNI, so certificates are still verified against it). Every refusal happens before any
connection to the refused address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

from gateway.core.errors import ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_net = ipaddress.ip_network

# IANA IPv4 Special-Purpose Address Registry (iana-ipv4-special-registry), every entry, also those
# marked globally reachable (anycast services, AS112): no media server lives there. Plus multicast.
SPECIAL_IPV4 = [
    _net(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (cloud metadata endpoints)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, 192.0.0.8 dummy, NAT64 discovery…)
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # direct delegation AS112
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 (limited broadcast)
    )
]
# Global unicast IPv6 is 2000::/3; everything outside it (loopback, unspecified, ::/96
# IPv4-compatible, ::ffff:0:0:0/96 IPv4-translated, 100::/64 discard, fc00::/7 unique-local,
# fec0::/10 site-local, fe80::/10 link-local, ff00::/8 multicast) is refused by that alone.
GLOBAL_UNICAST_IPV6 = _net("2000::/3")
# IANA IPv6 Special-Purpose Address Registry (iana-ipv6-special-registry) inside 2000::/3.
SPECIAL_IPV6 = [
    _net(n)
    for n in (
        "2001::/23",  # IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48,
        # AMT 2001:3::/32, AS112 2001:4:112::/48, ORCHID 2001:10::/28 and 2001:20::/28, drone
        # remote ID 2001:30::/28, the anycast services in 2001:1::/48
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4
        "2620:4f:8000::/48",  # direct delegation AS112
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
    )
]
# IPv6 forms that deliver to an IPv4 address: judged as that address. NAT64's local-use
# 64:ff9b:1::/48 is not one of them (it is outside 2000::/3, so refused).
IPV4_MAPPED = _net("::ffff:0:0/96")
NAT64_WELL_KNOWN = _net("64:ff9b::/96")

# Name resolution runs on these threads: a resolver that hangs past the deadline is left behind
# without holding up the request (asyncio.run would wait for its own default executor).
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="url-guard-dns")


class UrlRefused(ApiError):
    """A URL the gateway does not reach. A 422 by default: the request is well-formed, the URL is
    not one the gateway reaches (or could not reach)."""

    def __init__(self, code: str, message: str, *, status: int = 422) -> None:
        super().__init__(message, code=code, status=status)


def address_forbidden(address: IPAddress, allowed: Sequence[str] = ()) -> bool:
    """True for every address a URL from outside must not reach: anything but public unicast,
    unless an operator allowed its network (`allowed`, CIDR strings)."""
    networks = [_net(n) for n in allowed]
    if any(address in network for network in networks if network.version == address.version):
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return any(address in network for network in SPECIAL_IPV4)
    if address in IPV4_MAPPED or address in NAT64_WELL_KNOWN:
        return address_forbidden(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), allowed)
    if address not in GLOBAL_UNICAST_IPV6:
        return True
    return any(address in network for network in SPECIAL_IPV6)


async def resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.run_in_executor(
            _resolver, lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        )
    except (OSError, UnicodeError):
        raise UrlRefused("url_unresolvable", f"{host} does not resolve.") from None
    return list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    )


async def checked_target(url: str, *, allowed: Sequence[str] = ()) -> tuple[str, str, str]:
    """The URL to connect to (with the checked address in place of the name), the Host header and
    the TLS server name, for an http(s) URL whose host resolves only to addresses that are public
    or in `allowed`. Raises UrlRefused."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:  # e.g. "http://[x/": a bracket that is no IPv6 address
        raise UrlRefused("url_invalid", "The URL is not valid.") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("url_scheme", "Only http and https URLs are accepted.")
    if parts.username or parts.password:
        raise UrlRefused("url_credentials", "URLs with credentials are not accepted.")
    host = parts.hostname
    if not host:
        raise UrlRefused("url_invalid", "The URL has no host.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    if not addresses or any(address_forbidden(a, allowed) for a in addresses):
        raise UrlRefused("url_forbidden", f"{host} resolves to an address that is not public.")
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return pinned, host_header, host
