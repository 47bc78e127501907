"""``GET /metrics``: Prometheus' text format, on a listener of its own (GATEWAY_METRICS_PORT).

The API's port is the public one (docker-compose.yml publishes it), so the
metrics never share it: with ``metrics_port`` set, the app starts a second,
one-route app on ``metrics_host:metrics_port`` (127.0.0.1 unless set), for
the monitoring network only. It needs no user's token: what it shows is
counts and route templates, never ids, paths or names.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.core.metrics import Metrics
from gateway.http import appkeys
from gateway.http.middlewares import error_middleware

log = structlog.get_logger("gateway.metrics")


def metrics_app(metrics: Metrics) -> web.Application:
    """The metrics listener's app: ``GET /metrics`` and nothing else."""
    app = web.Application(middlewares=[error_middleware])

    async def render(request: web.Request) -> web.Response:
        # Collected now: the pool gauge is read at scrape time.
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", render)
    return app


async def listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """Serve the app's metrics on ``metrics_host:metrics_port`` while the app runs (none when the port is 0)."""
    config = app[appkeys.CONFIG]
    if not config.metrics_port:
        yield
        return
    runner = web.AppRunner(metrics_app(app[appkeys.METRICS]), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.metrics_host, config.metrics_port, reuse_address=True).start()
    log.info("metrics_listening", host=config.metrics_host, port=config.metrics_port)
    try:
        yield
    finally:
        await runner.cleanup()
