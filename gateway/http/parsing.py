"""Reading requests: JSON bodies, fields, page sizes and cursors, each with a 400 that says what is wrong."""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Literal, overload

from aiohttp import web

from gateway.http.errors import bad_request

# Listings: keyset pagination, never OFFSET, so page 1,000 costs what page 1 does.
DEFAULT_PAGE = 100
MAX_PAGE = 1000


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


async def read_optional_json(request: web.Request) -> dict:
    """The JSON object of a body every field of which is optional: no body at all reads as ``{}``."""
    if not (await request.read()).strip():
        return {}
    return await read_json(request)


@overload
def require_str(body: dict, name: str, *, max_length: int = 1024, optional: Literal[False] = False) -> str: ...
@overload
def require_str(body: dict, name: str, *, max_length: int = 1024, optional: bool) -> str | None: ...
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


def page_limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not re.fullmatch(r"[0-9]{1,7}", raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise bad_request(f"`limit` must be an integer from 1 to {MAX_PAGE}", "invalid_limit", field="limit")
    return int(raw)


def encode_cursor(kind: str, position: str | int) -> str:
    """An opaque cursor: base64url of ``v1:<kind>:<position>``.

    ``kind`` ``own`` carries the ``files.seq`` of the last file of the page
    (own files come newest first, seq descending); ``shared`` carries the share
    time and file id of the last file (newest share first).
    """
    raw = f"v1:{kind}:{position}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def damaged_cursor():
    return bad_request("`cursor` is damaged; pass `next_cursor` unchanged", "invalid_cursor", field="cursor")


def decode_cursor(cursor: str, kind: str) -> str:
    """The position in a cursor of this ``kind``; 400 naming `cursor` for anything else."""
    invalid = bad_request(
        "`cursor` is not a cursor of this listing; pass `next_cursor` from the previous page unchanged",
        "invalid_cursor",
        field="cursor",
    )
    if not cursor or len(cursor) > 200:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid from exc
    version, _, rest = raw.partition(":")
    found_kind, _, position = rest.partition(":")
    if version != "v1" or found_kind != kind or not position:
        raise invalid
    return position


def own_cursor(query: Mapping[str, str]) -> int | None:
    """The ``files.seq`` to page below, from ``?cursor=`` of the own-files listing."""
    cursor = query.get("cursor")
    if cursor is None:
        return None
    position = decode_cursor(cursor, "own")
    if not position.isascii() or not position.isdigit():
        raise damaged_cursor()
    return int(position)


def shared_cursor(query: Mapping[str, str]) -> tuple[str, str] | None:
    """The (share time, file id) to page below, from ``?cursor=`` of the shared-files listing."""
    cursor = query.get("cursor")
    if cursor is None:
        return None
    shared_at, _, file_id = decode_cursor(cursor, "shared").partition("|")
    if not file_id:
        raise damaged_cursor()
    return shared_at, file_id
