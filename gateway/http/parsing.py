"""Reading requests: JSON bodies, fields, page sizes and cursors, each with a 400 that says what is wrong."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal, overload

from aiohttp import web

from gateway.core.permissions import FILE_ID_PATTERN
from gateway.http.errors import ApiError, bad_request

# A folder id in a route: `root` or what the core makes (32 lowercase hex digits, as file ids).
FOLDER_ID = "{folder_id:root|" + FILE_ID_PATTERN + "}"
TRASH_ID = "{id:" + FILE_ID_PATTERN + "}"

# A file id in a route: what the core makes (32 lowercase hex digits), so that the literal paths beside
# /files/{file_id} (/files/share, /files/shared) are never taken for a file id, and their 405s name only
# their own methods in Allow. Any other id is no endpoint (404). The OpenAPI document's file_id pattern.
FILE_ID = "{file_id:" + FILE_ID_PATTERN + "}"

# Listings: keyset pagination, never OFFSET, so page 1,000 costs what page 1 does.
DEFAULT_PAGE = 100
MAX_PAGE = 1000


# JSON bodies: every one the gateway reads is parsed here (decode_json), bounded before parsing.
# The largest: a claim of 10,000 chunk fingerprints is about 700 KB. The app's client_max_size
# (gateway/http/app.py) is this too, so request.read() never holds more.
MAX_JSON_BODY = 1024 * 1024
# The longest path a query takes (Linux's PATH_MAX), and a request line that can carry it encoded.
MAX_QUERY_PATH = 4096
MAX_REQUEST_LINE = 64 * 1024
# No request of the contract nests deeper than 3, the store's events 6; Python's parser recurses
# once per level, and 100,000 levels (100 KB of `[`) would end in a RecursionError: a 500.
MAX_JSON_DEPTH = 32

# A JSON string once its escapes are gone, up to its closing quote, or to the end of the body when
# it has none (invalid JSON: the parser stops there).
JSON_STRING = re.compile(rb'"[^"]*"?')
# Bytes that are no bracket are dropped; `[` and `{` become `(`, `]` and `}` become `)`.
NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
BRACKETS = bytes.maketrans(b"[]{}", b"()()")


def nests_deeper_than(raw: bytes, limit: int) -> bool:
    """Whether the arrays and objects of a JSON text (valid or not) nest more than ``limit`` deep.

    Brackets inside strings do not count. Linear in the body and at once where bodies are ordinary
    (fewer brackets than ``limit``, or a run of more); a body of a million brackets otherwise costs
    tens of milliseconds, about what parsing it does.
    """
    # Escaped backslashes first, then escaped quotes, left to right as JSON pairs them: what is left
    # of each string is quotes around no quote. (A backslash outside a string is invalid JSON: the
    # parser stops there, before the character it takes away here.)
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = JSON_STRING.sub(b"", unescaped).translate(BRACKETS, NOT_BRACKETS)
    if structure.count(b"(") <= limit:
        return False
    if b"(" * (limit + 1) in structure:
        return True
    depth = 0
    for byte in structure:
        if byte == 0x28:  # (
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def decode_json(raw: bytes, *, what: str = "the request body", code: str = "invalid_json") -> Any:
    """``raw`` parsed, or a 400 (``code``) naming ``what`` is wrong with it: never more than
    MAX_JSON_BODY bytes (413 otherwise) nor nested deeper than MAX_JSON_DEPTH.

    UTF-8 only (RFC 8259), which is also what makes the byte scan of :func:`nests_deeper_than`
    see the text the parser sees: in UTF-8 a byte below 0x80 is always that ASCII character,
    whereas in UTF-16 (which ``json.loads`` would guess from bytes) a quote byte may be half of
    another character.
    """
    if len(raw) > MAX_JSON_BODY:
        raise payload_too_large(what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"{what} is not UTF-8 JSON: {exc}", code) from exc
    if nests_deeper_than(raw, MAX_JSON_DEPTH):
        raise bad_request(f"{what} nests arrays and objects deeper than {MAX_JSON_DEPTH} levels", code)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise bad_request(f"{what} is not valid JSON: {exc}", code) from exc


def payload_too_large(what: str = "the request body") -> ApiError:
    return ApiError(413, "payload_too_large", f"{what} is over {MAX_JSON_BODY} bytes")


async def read_body(request: web.Request) -> bytes:
    """The bytes of a JSON body (none: ``b""``): refused before a byte is read when its
    Content-Length is over MAX_JSON_BODY, and (aiohttp's client_max_size) as soon as more come."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise payload_too_large()
    return await request.read()  # read once, then kept: b"" when there is none


async def read_json(request: web.Request) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    raw = await read_body(request)
    if not raw:
        raise bad_request("the request body is empty; send a JSON object", "invalid_json")
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", "invalid_json")
    return body


async def read_optional_json(request: web.Request) -> dict:
    """The JSON object of a body every field of which is optional: no body at all reads as ``{}``."""
    if not (await read_body(request)).strip():
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


def as_integer(value) -> int | None:
    """``value`` as an int if it is a JSON integer; as JSON Schema says, 5.0 is the integer 5 (True is not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def require_int(body: dict, name: str, *, minimum: int = 0) -> int:
    value = as_integer(body.get(name))
    if value is None or value < minimum:
        raise bad_request(f"`{name}` must be an integer >= {minimum}", "invalid_field", field=name)
    return value


def page_limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not re.fullmatch(r"[0-9]{1,7}", raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise bad_request(f"`limit` must be an integer from 1 to {MAX_PAGE}", "invalid_limit", field="limit")
    return int(raw)


# Cursors: where the previous page ended, in a form the OpenAPI document states exactly (its `cursor`
# and `shared_cursor` parameters carry these patterns; tests/test_openapi.py keeps them equal), so
# every cursor the document allows is one the gateway accepts. Clients pass them back unchanged.
OWN_CURSOR = re.compile(r"^v1\.own\.[0-9]{1,18}$")
SHARED_CURSOR = re.compile(
    r"^v1\.shared\.[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z\.[0-9a-f]{32}$"
)


# A folder listing continues after (kind, name_key, id): the key in hex (any text, no dots).
ENTRIES_CURSOR = re.compile(r"^v1\.entries\.(folder|file)\.(?:[0-9a-f]{2}){1,2048}\.[0-9a-f]{32}$")
TRASH_CURSOR = re.compile(
    r"^v1\.trash\.[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z\.[0-9a-f]{32}$"
)


def entries_cursor_after(position: tuple[str, str, str]) -> str:
    kind, key, node_id = position
    return f"v1.entries.{kind}.{key.encode('utf-8').hex()}.{node_id}"


def entries_cursor(query: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The (kind, name_key, id) a folder listing continues after, from ``?cursor=``. A key that is not
    UTF-8 (no cursor of ours) still names a place in the order: its bytes are read as they decode."""
    cursor = _cursor(query, ENTRIES_CURSOR)
    if cursor is None:
        return None
    kind, key, node_id = cursor.removeprefix("v1.entries.").split(".")
    return kind, bytes.fromhex(key).decode("utf-8", "replace").replace("\x00", "\ufffd"), node_id


def trash_cursor_after(position: tuple[str, str]) -> str:
    return f"v1.trash.{position[0]}.{position[1]}"


def trash_cursor(query: Mapping[str, str]) -> tuple[str, str] | None:
    """The (deleted_at, id) the trash listing continues below."""
    return _time_and_id(query, TRASH_CURSOR, "v1.trash.")


def own_cursor_after(seq: int) -> str:
    """The own-files listing continues below ``files.seq`` ``seq`` (newest first)."""
    return f"v1.own.{seq}"


def shared_cursor_after(shared_at: str, file_id: str) -> str:
    """The shared-files listing continues below (share time, file id) (newest share first)."""
    return f"v1.shared.{shared_at}.{file_id}"


def _cursor(query: Mapping[str, str], pattern: re.Pattern) -> str | None:
    cursor = query.get("cursor")
    if cursor is not None and not pattern.match(cursor):
        raise bad_request(
            "`cursor` is not a cursor of this listing; pass `next_cursor` from the previous page unchanged",
            "invalid_cursor",
            field="cursor",
        )
    return cursor


def own_cursor(query: Mapping[str, str]) -> int | None:
    """The ``files.seq`` to page below, from ``?cursor=`` of the own-files listing."""
    cursor = _cursor(query, OWN_CURSOR)
    return None if cursor is None else int(cursor.rsplit(".", 1)[1])


def shared_cursor(query: Mapping[str, str]) -> tuple[str, str] | None:
    """The (share time, file id) to page below, from ``?cursor=`` of the shared-files listing."""
    return _time_and_id(query, SHARED_CURSOR, "v1.shared.")


def _time_and_id(query: Mapping[str, str], pattern: re.Pattern, prefix: str) -> tuple[str, str] | None:
    """(timestamp, id) from a cursor ``<prefix><timestamp>.<id>`` that matches ``pattern``."""
    cursor = _cursor(query, pattern)
    if cursor is None:
        return None
    stamp, item_id = cursor.removeprefix(prefix).rsplit(".", 1)
    return stamp, item_id
