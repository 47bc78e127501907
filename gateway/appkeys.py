"""Typed keys for the state the app shares with its handlers."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from aiocache import BaseCache

    from gateway.config import Config
    from gateway.db import Database
    from gateway.tokens import TokenUser
    from storage import ObjectStore

CONFIG: web.AppKey["Config"] = web.AppKey("config")
DB: web.AppKey["Database"] = web.AppKey("db")
STORE: web.AppKey["ObjectStore"] = web.AppKey("store")
CACHE: web.AppKey["BaseCache | None"] = web.AppKey("cache")  # None: caching is off

# Per-request state set by the middlewares.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
USER: web.RequestKey["TokenUser"] = web.RequestKey("user")
