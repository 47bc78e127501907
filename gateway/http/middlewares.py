"""Metrics, request ids, the request body's timeout, JSON errors and bearer-token auth, in that order (outermost first)."""
from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.http import appkeys
from gateway.http.errors import ApiError, api_error, error_response, unauthorized

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("gateway.http")

# aiohttp's own HTTP errors (unknown path, wrong method, body too large) get
# the contract's error body too.
# A path under a file (/dropbox/v1/files/{file_id}...): unmatched, its id is not one the core makes.
FILE_PATH = re.compile(r"^/dropbox/v1/files/[^/]+(/|$)")
HTTP_ERROR_CODES = {
    400: ("invalid_request", "the request is malformed"),
    404: ("unknown_endpoint", "no such endpoint"),
    405: ("method_not_allowed", "this endpoint does not take that method"),
    413: ("payload_too_large", "the request body is too large"),
}


# The path segment after these prefixes is (or may be) a shared link's token or a zip URL's ticket,
# bearer secrets: the request log shows it redacted.
LINK_TOKEN_IN_PATH = re.compile(r"^(/s/|/dropbox/v1/links/|/dropbox/v1/zips/)[^/]+")


def loggable_path(path: str) -> str:
    """The path as the request log may show it: ``/s/<token>`` -> ``/s/[redacted]``."""
    return LINK_TOKEN_IN_PATH.sub(r"\1[redacted]", path)


# Methods as label values: any other (a client may send anything) counts as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def public(handler: Handler) -> Handler:
    """Mark a handler that needs no access token."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


def route_label(request: web.Request) -> str:
    """The matched route's path template (``/dropbox/v1/files/{file_id}``), never the raw path.

    Raw paths hold file ids and link tokens: as label values they would leak
    secrets into the metrics and grow a series per file.
    """
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answer by route template and status, with its latency (gateway/core/metrics.py)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects (errors were answered inside)
        status = exc.status
        raise
    finally:
        method = request.method if request.method in KNOWN_METHODS else "other"
        request.app[appkeys.METRICS].request_done(method, route_label(request), status, time.perf_counter() - started)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else secrets.token_hex(8)
    request[appkeys.REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as redirect:  # redirects travel as exceptions; errors were answered inside
        redirect.headers["X-Request-Id"] = request_id
        _log_request(request, redirect.status, started)
        raise
    response.headers["X-Request-Id"] = request_id
    _log_request(request, response.status, started)
    return response


def _log_request(request: web.Request, status: int, started: float) -> None:
    log.info(
        "request",
        method=request.method,
        path=loggable_path(request.path),
        status=status,
        ms=round((time.perf_counter() - started) * 1000, 2),
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = HTTP_ERROR_CODES.get(exc.status, ("http_error", exc.reason))
        if exc.status == 404 and FILE_PATH.match(request.path):
            # /files/<not a file id>...: routes take only ids the core makes, so this names no file.
            code, message = "not_found", "no such file"
        response = error_response(ApiError(exc.status, code, message))
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except Exception as exc:  # noqa: BLE001 - every answer is the contract's JSON, a bug's too
        error = api_error(exc)
        if error is None:
            log.exception("unhandled_error")
            request_id = request.get(appkeys.REQUEST_ID, "?")
            error = ApiError(500, "internal_error", f"unexpected error; quote request id {request_id} when reporting it")
        elif error.status >= 500:
            log.warning("request_failed", status=error.status, code=error.code, error=error.message,
                        error_type=type(exc).__name__, detail=str(exc))
        return error_response(error)


class BodyWatch:
    """Ends a request whose body stops arriving: ``timeout`` seconds without a byte while more is due.

    aiohttp times nothing while a handler waits for body bytes, so a client
    could hold a connection (and whatever the handler holds) for ever by
    sending nothing after its head. Like nginx's ``client_body_timeout``, the
    clock runs between two reads, not over the whole body, and not while the
    gateway itself stopped reading (a full buffer pauses the transport). When it
    runs out, the pending read raises the 408 that answers the request.
    """

    def __init__(self, request: web.Request, timeout: float):
        self.content = request.content
        self.transport = request.transport
        self.timeout = timeout
        self.seen = self.content.total_bytes
        self.fired = False
        self._handle = asyncio.get_running_loop().call_later(timeout, self._check)

    def _check(self) -> None:
        if self.content.is_eof() or self.content.exception() is not None:
            return
        paused = self.transport is not None and not self.transport.is_reading()
        if self.content.total_bytes != self.seen or paused:
            self.seen = self.content.total_bytes
            self._handle = asyncio.get_running_loop().call_later(self.timeout, self._check)
            return
        self.fired = True
        log.info("request_body_timeout", received=self.content.total_bytes)
        self.content.set_exception(ApiError(
            408, "request_timeout", f"no byte of the request body arrived for {self.timeout:g} seconds"))

    def cancel(self) -> None:
        self._handle.cancel()


@web.middleware
async def body_timeout_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Watch the body of a request while its handler runs (:class:`BodyWatch`); close after a 408."""
    if not request.body_exists or request.content.is_eof():
        return await handler(request)
    watch = BodyWatch(request, request.app[appkeys.CONFIG].body_timeout)
    try:
        response = await handler(request)
    finally:
        watch.cancel()
    if watch.fired:
        response.force_close()  # what is left of the body is not worth waiting for
    return response


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None or getattr(handler, "public", False):
        return await handler(request)
    token = bearer_token(request)
    if token is None:
        raise unauthorized("send `Authorization: Bearer <access_token>` (get one from POST /dropbox/v1/tokens)", "missing_token")
    request[appkeys.USER] = await request.app[appkeys.CORE].sessions.authenticate(token)
    structlog.contextvars.bind_contextvars(user_id=request[appkeys.USER].user_id)
    return await handler(request)
