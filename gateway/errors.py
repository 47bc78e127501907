"""API errors: every failure answers ``{"error": {"code", "message"}}``."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **details: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


def bad_request(message: str, code: str = "invalid_request", **details: Any) -> ApiError:
    return ApiError(400, code, message, **details)


def not_found(message: str = "no such file", code: str = "not_found", **details: Any) -> ApiError:
    return ApiError(404, code, message, **details)


def unauthorized(message: str, code: str = "unauthorized") -> ApiError:
    return ApiError(401, code, message)


def conflict(message: str, code: str = "conflict", **details: Any) -> ApiError:
    return ApiError(409, code, message, **details)


def error_response(error: ApiError, request_id: str | None = None) -> web.Response:
    headers = {"X-Request-Id": request_id} if request_id else None
    if error.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="dropbox"'}
    return web.json_response(error.body(), status=error.status, headers=headers)


async def read_json(request: web.Request) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    raw = await request.read()
    if not raw:
        raise bad_request("the request body is empty; send a JSON object", "invalid_json")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", "invalid_json") from exc
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", "invalid_json")
    return body


def require_str(body: dict, name: str, *, max_length: int = 1024, optional: bool = False) -> str | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise bad_request(f"`{name}` must be a non-empty string", "invalid_field", field=name)
    if len(value) > max_length:
        raise bad_request(f"`{name}` is longer than {max_length} characters", "invalid_field", field=name)
    return value


def require_int(body: dict, name: str, *, minimum: int = 0) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise bad_request(f"`{name}` must be an integer >= {minimum}", "invalid_field", field=name)
    return value
