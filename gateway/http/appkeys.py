"""Typed keys for the state the app shares with its handlers."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.core import Core
    from gateway.core.metrics import Metrics
    from gateway.core.tokens import TokenUser

CONFIG: web.AppKey[Config] = web.AppKey("config")
CORE: web.AppKey[Core] = web.AppKey("core")  # set at start-up (gateway/http/app.py)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")  # this app's registry (gateway/core/metrics.py)

# Per-request state set by the middlewares.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
USER: web.RequestKey[TokenUser] = web.RequestKey("user")
