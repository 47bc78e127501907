"""The local stack on an address other machines use (``./dev up --address 192.168.1.20``).

Every part of the local stack listens on 127.0.0.1, so a browser on another machine can open the
web app only through an address of this one, and the app then hands it presigned URLs and download
URLs that name 127.0.0.1: that browser's own loopback. Chromium refuses a page of a LAN address
reaching into loopback, and nothing listens there anyway; the upload stalls and ends in "Cannot
reach the storage server".

With ``--address A`` the three addresses a client is given name A instead (the gateway's public
URL, the store's endpoint in presigned URLs, the CDN tier's URL), and the CDN tier's nginx listens
on A beside its own port with one plain proxy per part, to the part on 127.0.0.1. Proxies rather
than binding each part to A: the store's internal ports (master, volume server, filer, gRPC) stay
on loopback, the gateway still gets the store's events on loopback, and one place says what is
reachable from the network: the three ports below.

- Presigned URLs go through unchanged: SigV4 signs the Host the client sent (``A:port``), and the
  proxy passes it on as it came, bodies unbuffered (a chunk streams through).
- The gateway sees the proxy's address (127.0.0.1) on every request, so ``GATEWAY_TRUSTED_PROXIES``
  names it and the proxy sets X-Forwarded-For: the login slow-down counts each client apart.
- Plain http, as the rest of the local stack: on a LAN, browsers hide WebCrypto from http pages
  (the app then hashes with its JavaScript fallback, slower), and everything, passwords included,
  crosses the network in clear. README.md ("From other machines") says how to put TLS in front.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    gateway: int
    cdn: int
    s3: int


def checked_address(address: str) -> str:
    """An IP address of this machine's to listen on (no host names: nginx would resolve them once)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"--address must be an IP address of this machine, not {address!r}") from None
    if parsed.is_unspecified:
        raise ValueError("--address must be one address, not 0.0.0.0 or ::: say which network may connect")
    if str(parsed) == LOOPBACK:
        raise ValueError(f"--address: the parts listen on {LOOPBACK} already; give the address other machines use")
    return str(parsed)


def host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def public_environment(address: str, ports: Ports) -> dict[str, str]:
    """The gateway's settings that name what clients reach (all three on ``address``)."""
    def url(port: int) -> str:
        return f"http://{host_port(address, port)}"

    return {
        "GATEWAY_PUBLIC_URL": url(ports.gateway),
        "GATEWAY_S3_PUBLIC_ENDPOINT": url(ports.s3),
        "GATEWAY_CDN_URL": url(ports.cdn),
        # Every request reaches the gateway from the proxy below; it says who sent it.
        "GATEWAY_TRUSTED_PROXIES": LOOPBACK,
    }


def front_config(address: str, ports: Ports) -> str:
    """nginx server blocks (http level) that pass ``address``'s three ports to the parts on loopback."""
    blocks = []
    for name, port in (("gateway", ports.gateway), ("CDN tier", ports.cdn), ("S3 store", ports.s3)):
        blocks.append(
            f"# {name}: {host_port(address, port)} -> {host_port(LOOPBACK, port)}\n"
            "server {\n"
            f"    listen {host_port(address, port)};\n"
            "    client_max_body_size 0;          # the parts set their own limits\n"
            "    proxy_request_buffering off;     # chunks stream through, never spooled to disk\n"
            "    proxy_buffering off;\n"
            "    proxy_http_version 1.1;\n"
            "    proxy_set_header Connection \"\";\n"
            "    proxy_set_header Host $http_host;  # SigV4 signs the Host the client used\n"
            "    proxy_set_header X-Forwarded-For $remote_addr;\n"
            "    proxy_read_timeout 300s;\n"
            f"    location / {{ proxy_pass http://{host_port(LOOPBACK, port)}; }}\n"
            "}\n"
        )
    return "".join(blocks)
