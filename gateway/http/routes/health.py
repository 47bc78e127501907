"""Liveness, readiness and the public configuration."""
from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.db import Database, DiskFull
from gateway.http import appkeys
from gateway.logs import LOG_WRITES
from gateway.http.middlewares import public

routes = web.RouteTableDef()
READY_TIMEOUT = 5.0


@routes.get("/healthz")
@public
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _probe(name: str, check) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(check(), READY_TIMEOUT)
        return name, None
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named
        return name, str(exc) or exc.__class__.__name__


def disk_check(db: Database):
    """The disk's check: failing while the last log line, or the last write transaction, found the disk full."""

    async def check() -> None:
        full = LOG_WRITES.out_of_space or db.out_of_space
        if full:
            raise DiskFull(f"full: {full}")

    return check


@routes.get("/readyz")
@public
async def readyz(request: web.Request) -> web.Response:
    """200 when this gateway can serve its API: the metadata database and the store answer (the
    contract); 503 naming the failing ones otherwise.

    The CDN tier is not checked, by choice. Clients reach it at GATEWAY_CDN_URL, an address the
    gateway itself may not reach at all (under docker-compose it is the host's localhost:8081,
    which inside the gateway's container is the container itself), and a gateway made unready by
    it would also stop uploads, logins and sharing, while neither restarting the gateway nor
    taking it out of a load balancer repairs nginx. The CDN tier answers its own /healthz and is
    watched by whatever runs it: the local stack's supervisor starts it again when it exits
    (deploy/supervisor.py), docker-compose restarts it and marks it unhealthy on its healthcheck.
    """
    core = request.app[appkeys.CORE]
    results = await asyncio.gather(
        _probe("database", core.db.ping),
        _probe("store", core.store.check),
        _probe("disk", disk_check(core.db)),
    )
    checks = {name: ("ok" if error is None else error) for name, error in results}
    failing = [name for name, error in results if error is not None]
    if failing:
        body = {
            "error": {"code": "not_ready", "message": f"not ready: {', '.join(failing)} failing", "failing": failing},
            "checks": checks,
        }
        return web.json_response(body, status=503)
    return web.json_response({"status": "ready", "checks": checks})


@routes.get("/dropbox/v1/config")
@public
async def config(request: web.Request) -> web.Response:
    cfg = request.app[appkeys.CONFIG]
    return web.json_response(
        {
            "chunk_size": cfg.chunk_size,
            "max_file_size": cfg.max_file_size,
            "inline_upload_limit": cfg.inline_upload_limit,
            "upload_url_ttl": cfg.upload_url_ttl,
            "download_url_ttl": cfg.download_url_ttl,
            "trash_retention": cfg.trash_retention,
            "version_retention": cfg.version_retention,
            "signup": cfg.signup,  # not in the contract, which is silent on it: so clients can offer the right form
        }
    )
