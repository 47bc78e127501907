"""Request ids, JSON errors and bearer-token auth, in that order (outermost first)."""
from __future__ import annotations

import secrets
import time
from typing import Awaitable, Callable

import structlog
from aiohttp import web

from gateway import appkeys
from gateway.errors import ApiError, error_response, unauthorized
from gateway.tokens import verify_token
from storage import StoreError, StoreUnavailable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("gateway.http")

# aiohttp's own HTTP errors (unknown path, wrong method, body too large) get
# the contract's error body too.
HTTP_ERROR_CODES = {
    404: ("unknown_endpoint", "no such endpoint"),
    405: ("method_not_allowed", "this endpoint does not take that method"),
    413: ("payload_too_large", "the request body is too large"),
}


def public(handler: Handler) -> Handler:
    """Mark a handler that needs no access token."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else secrets.token_hex(8)
    request[appkeys.REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    response = await handler(request)
    response.headers["X-Request-Id"] = request_id
    log.info(
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except StoreUnavailable as exc:
        log.warning("store_unavailable", error=str(exc))
        return error_response(ApiError(503, "store_unavailable", f"the object store is not answering: {exc}"))
    except StoreError as exc:
        log.error("store_error", error=str(exc), store_code=exc.code)
        return error_response(ApiError(502, "store_error", f"the object store refused the request: {exc}"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = HTTP_ERROR_CODES.get(exc.status, ("http_error", exc.reason))
        error = ApiError(exc.status, code, message)
        response = error_response(error)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except Exception:
        log.exception("unhandled_error")
        return error_response(
            ApiError(500, "internal_error", f"unexpected error; quote request id {request['request_id']} when reporting it")
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None or getattr(handler, "public", False):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("send `Authorization: Bearer <access_token>` (get one from POST /dropbox/v1/tokens)", "missing_token")
    request[appkeys.USER] = verify_token(request.app[appkeys.CONFIG].jwt_secret, token.strip())
    structlog.contextvars.bind_contextvars(user_id=request[appkeys.USER].user_id)
    return await handler(request)
