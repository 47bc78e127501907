"""Who is asking: the client's address, which login throttling counts failures by.

The client is the connection's peer, unless the peer is a reverse proxy the
gateway trusts (``GATEWAY_TRUSTED_PROXIES``): then ``X-Forwarded-For`` names
the client. The header is read from the right, the hop nearest the gateway:
trusted proxies are skipped, and the first address that is not one is the
client. Whatever is further left was written by the client itself and is never
believed, so nobody can choose the address their failures count against by
sending the header; from an untrusted peer the header is ignored altogether.
"""
from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from collections.abc import Sequence

from aiohttp import web

from gateway.config import IPNetwork

IPAddress = IPv4Address | IPv6Address


def _parse(text: str) -> IPAddress | None:
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.0.0.1 is 10.0.0.1
    return mapped or address


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def client_address(request: web.Request, proxies: Sequence[IPNetwork]) -> str:
    """The client's IP address as text ("" when the connection has none, as over a Unix socket)."""
    address = _parse(request.remote or "")
    if address is None:
        return request.remote or ""
    if not _trusted(address, proxies):
        return str(address)
    hops = [hop for header in request.headers.getall("X-Forwarded-For", []) for hop in header.split(",")]
    for hop in reversed(hops):
        found = _parse(hop)
        if found is None:
            break  # not an address: trust nothing further left; the last trusted hop is the client
        address = found
        if not _trusted(address, proxies):
            break
    return str(address)
