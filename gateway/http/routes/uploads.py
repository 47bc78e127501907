"""Upload endpoints: start or resume, presigned chunk URLs, completion, inline uploads."""
from __future__ import annotations

import asyncio
import json
import re
import tempfile
from typing import BinaryIO

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.config import MAX_CHUNKS, Config
from gateway.core.uploads import UploadClaim
from gateway.http import appkeys
from gateway.http.errors import ApiError, bad_request
from gateway.http.parsing import FILE_ID, as_integer, read_json, require_int, require_str
from gateway.http.views import file_response
from protocol.fingerprints import chunk_count, file_fingerprint, fingerprint_stream, is_fingerprint
from storage import PresignedRequest

routes = web.RouteTableDef()

# A MIME type, nothing that could smuggle a header or a newline into the CDN's Content-Type.
MIME_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
DEFAULT_TYPE = "application/octet-stream"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # not text: neither database can store it
MAX_NAME = 1024
MAX_METADATA = 64 * 1024


def parse_name_and_type(body: dict) -> tuple[str, str]:
    name = require_str(body, "file_name", max_length=MAX_NAME)
    if "\x00" in name or name.strip() == "" or LONE_SURROGATE.search(name):
        raise bad_request("`file_name` must be text, not blank and without NUL", "invalid_field", field="file_name")
    file_type = body.get("file_type")
    if file_type is None or file_type == "":  # left out: bytes of no particular type
        file_type = DEFAULT_TYPE
    if not isinstance(file_type, str) or not MIME_TYPE.match(file_type) or len(file_type) > 255:
        raise bad_request("`file_type` must be a MIME type such as text/plain", "invalid_field", field="file_type")
    return name, file_type


def parse_claim(body: dict, config: Config) -> UploadClaim:
    """Check that the claimed sizes and fingerprints agree with each other and with our limits."""
    name, file_type = parse_name_and_type(body)
    file_size = require_int(body, "file_size")
    if file_size > config.max_file_size:
        raise bad_request(
            f"`file_size` {file_size} is over max_file_size {config.max_file_size}", "file_too_large", field="file_size"
        )
    chunk_size = require_int(body, "chunk_size", minimum=1)
    if chunk_size != config.chunk_size:
        raise bad_request(
            f"`chunk_size` must be {config.chunk_size} (see GET /dropbox/v1/config), not {chunk_size}",
            "wrong_chunk_size",
            field="chunk_size",
        )
    chunks = body.get("chunks")
    if not isinstance(chunks, list):
        raise bad_request("`chunks` must be a list of chunk fingerprints", "invalid_field", field="chunks")
    expected = chunk_count(file_size, chunk_size)
    if len(chunks) != expected:
        raise bad_request(
            f"a file of {file_size} bytes has {expected} chunks of {chunk_size} bytes, but `chunks` lists {len(chunks)}",
            "wrong_chunk_count",
            field="chunks",
        )
    if expected > MAX_CHUNKS:
        raise bad_request(f"at most {MAX_CHUNKS} chunks per file", "too_many_chunks", field="chunks")
    for index, fp in enumerate(chunks):
        if not is_fingerprint(fp):
            raise bad_request(
                f"chunks[{index}] is not a lowercase hex SHA-256 (64 characters 0-9a-f)", "invalid_fingerprint", field="chunks"
            )
    fingerprint = body.get("fingerprint")
    if not is_fingerprint(fingerprint):
        raise bad_request("`fingerprint` is not a lowercase hex SHA-256", "invalid_fingerprint", field="fingerprint")
    if fingerprint != file_fingerprint(chunks):
        raise bad_request(
            "`fingerprint` is not the SHA-256 of the chunk digests in order (see the contract's Fingerprints)",
            "fingerprint_mismatch",
            field="fingerprint",
        )
    return UploadClaim(name, file_size, file_type, fingerprint, chunk_size, chunks)


@routes.post("/dropbox/v1/files")
async def create_file(request: web.Request) -> web.Response:
    if request.content_type == "multipart/form-data":
        return await inline_upload(request)
    core = request.app[appkeys.CORE]
    user_id = request[appkeys.USER].user_id
    claim = parse_claim(await read_json(request), request.app[appkeys.CONFIG])
    file_id, created = await core.uploads.start(user_id, claim)
    return await file_response(core, user_id, file_id, status=201 if created else 200)


@routes.post(f"/dropbox/v1/files/{FILE_ID}/upload-urls")
async def upload_urls(request: web.Request) -> web.Response:
    indexes: list[int] | None = None
    if request.can_read_body and (await request.read()).strip():
        asked = (await read_json(request)).get("chunks")
        parsed = [as_integer(i) for i in asked] if isinstance(asked, list) else None
        if parsed is None or None in parsed:
            raise bad_request("`chunks` must be a list of chunk indexes", "invalid_field", field="chunks")
        indexes = [i for i in parsed if i is not None]  # all of them: checked just above
    core = request.app[appkeys.CORE]
    presigned = await core.uploads.upload_urls(request[appkeys.USER].user_id, request.match_info["file_id"], indexes)
    # 5,120 URLs are megabytes of JSON: encoded off the event loop, like the presigning itself.
    body = await asyncio.to_thread(urls_body, presigned)
    return web.Response(body=body, content_type="application/json")


def urls_body(presigned: list[tuple[int, PresignedRequest]]) -> bytes:
    urls = [
        {"index": index, "url": p.url, "method": p.method, "headers": p.headers, "expires_at": p.expires_at}
        for index, p in presigned
    ]
    return json.dumps({"urls": urls}).encode()


@routes.post(f"/dropbox/v1/files/{FILE_ID}/complete")
async def complete(request: web.Request) -> web.Response:
    core = request.app[appkeys.CORE]
    user_id = request[appkeys.USER].user_id
    await core.uploads.finish(user_id, request.match_info["file_id"])
    return await file_response(core, user_id, request.match_info["file_id"])


async def inline_upload(request: web.Request) -> web.Response:
    """Small files in one request (curl -F): the gateway streams the bytes into the store itself.

    The ``file`` part is spooled to a temporary file (memory holds one read),
    its chunk fingerprints computed from the spool off the event loop, then the
    bytes go through the same multipart path as any client upload, so the store
    verifies them all the same.
    """
    config = request.app[appkeys.CONFIG]
    core = request.app[appkeys.CORE]
    with tempfile.TemporaryFile() as spool:
        try:
            metadata, saw_file = await _read_form(await request.multipart(), spool, config.inline_upload_limit)
        except (ValueError, HttpProcessingError) as exc:  # what aiohttp's multipart parser raises
            raise bad_request(f"the form is malformed: {exc}", "invalid_multipart") from exc
        if not saw_file:
            raise bad_request("send a `file` part with the file's bytes (and `file_metadata`)", "invalid_multipart")
        if metadata is None or "file_name" not in metadata:
            raise bad_request("send a `file_metadata` part with at least `file_name`", "invalid_multipart")
        name, file_type = parse_name_and_type(metadata)
        spool.seek(0)
        fingerprint, chunks, size = await asyncio.to_thread(fingerprint_stream, spool, config.chunk_size)
        claim = UploadClaim(name, size, file_type, fingerprint, config.chunk_size, chunks)
        file_id = await core.uploads.upload_inline(request[appkeys.USER].user_id, claim, spool)
    return await file_response(core, request[appkeys.USER].user_id, file_id, status=201)


async def _read_form(reader: MultipartReader, spool: BinaryIO, limit: int) -> tuple[dict | None, bool]:
    """(file_metadata, whether a `file` part came), the file's bytes written to ``spool``."""
    metadata: dict | None = None
    saw_file = False
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise bad_request("nested multipart bodies are not supported", "invalid_multipart")
        if part.name == "file_metadata":
            metadata = _parse_metadata(await part.read(decode=True))
        elif part.name == "file":
            saw_file = True
            size = 0
            while data := await part.read_chunk(256 * 1024):
                size += len(data)
                if size > limit:
                    raise ApiError(
                        413,
                        "inline_upload_too_large",
                        f"inline uploads take at most {limit} bytes; "
                        "use the chunked upload (POST /dropbox/v1/files with JSON) for larger files",
                    )
                spool.write(data)
            if metadata is None and part.filename:
                metadata = {"file_name": part.filename}
        else:
            raise bad_request(f"unexpected form part {part.name!r}; send `file` and `file_metadata`", "invalid_multipart")
    return metadata, saw_file


def _parse_metadata(raw: bytes) -> dict:
    if len(raw) > MAX_METADATA:
        raise bad_request("`file_metadata` is too large", "invalid_multipart")
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"`file_metadata` is not valid JSON: {exc}", "invalid_json") from exc
    if not isinstance(metadata, dict):
        raise bad_request("`file_metadata` must be a JSON object", "invalid_json")
    return metadata
