"""Upload endpoints: start or resume, presigned chunk URLs, completion, inline uploads."""
from __future__ import annotations

import hashlib
import json
import re
import tempfile

import structlog
from aiohttp import BodyPartReader, web

from gateway import appkeys
from gateway.config import MAX_CHUNKS
from gateway.db import utcnow
from gateway.errors import ApiError, bad_request, conflict, read_json, require_int, require_str
from gateway.files import get_chunks, get_file, owned_file
from protocol.fingerprints import chunk_count, file_fingerprint, hex_to_b64, is_fingerprint
from gateway.content import content_key
from gateway.routes.files import file_response
from gateway.uploads import UploadClaim, complete_upload, start_upload

routes = web.RouteTableDef()
log = structlog.get_logger("gateway.uploads")

# A MIME type, nothing that could smuggle a header or a newline into the CDN's Content-Type.
MIME_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
DEFAULT_TYPE = "application/octet-stream"
MAX_NAME = 1024


def parse_name_and_type(body: dict) -> tuple[str, str]:
    name = require_str(body, "file_name", max_length=MAX_NAME)
    if "\x00" in name or name.strip() == "":
        raise bad_request("`file_name` must not be blank or contain NUL", "invalid_field", field="file_name")
    file_type = body.get("file_type") or DEFAULT_TYPE
    if not isinstance(file_type, str) or not MIME_TYPE.match(file_type) or len(file_type) > 255:
        raise bad_request("`file_type` must be a MIME type such as text/plain", "invalid_field", field="file_type")
    return name, file_type


def parse_claim(body: dict, config) -> UploadClaim:
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
    user = request[appkeys.USER]
    if request.content_type == "multipart/form-data":
        return await inline_upload(request)
    claim = parse_claim(await read_json(request), request.app[appkeys.CONFIG])
    file_id, created = await start_upload(request.app, user.user_id, claim)
    return await file_response(request, file_id, status=201 if created else 200)


@routes.post("/dropbox/v1/files/{file_id}/upload-urls")
async def upload_urls(request: web.Request) -> web.Response:
    app = request.app
    row = await owned_file(app, request[appkeys.USER].user_id, request.match_info["file_id"])
    if row["status"] != "uploading":
        raise conflict(f"the file is {row['status']}; there is nothing to upload", "not_uploading")
    chunks = await get_chunks(app, row["id"])
    wanted = [c["idx"] for c in chunks if c["status"] != "uploaded"]
    if request.can_read_body and (await request.read()).strip():
        body = await read_json(request)
        asked = body.get("chunks")
        if not isinstance(asked, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in asked):
            raise bad_request("`chunks` must be a list of chunk indexes", "invalid_field", field="chunks")
        out_of_range = [i for i in asked if not 0 <= i < row["total_chunks"]]
        if out_of_range:
            raise bad_request(
                f"chunk indexes {out_of_range[:10]} are outside 0..{row['total_chunks'] - 1}", "invalid_chunk_index", field="chunks"
            )
        wanted = sorted(set(asked))
    config = app[appkeys.CONFIG]
    store = app[appkeys.STORE]
    key = content_key(row["fingerprint"])
    wanted_set = set(wanted)  # a list lookup per chunk would be quadratic in 5,120 chunks
    chosen = [chunk for chunk in chunks if chunk["idx"] in wanted_set]
    presigned = await store.presign_upload_parts(
        key, row["upload_id"], [(c["idx"] + 1, hex_to_b64(c["fingerprint"])) for c in chosen], config.upload_url_ttl
    )
    urls = [
        {"index": c["idx"], "url": p.url, "method": p.method, "headers": p.headers, "expires_at": p.expires_at}
        for c, p in zip(chosen, presigned)
    ]
    # Handing out URLs is activity: the upload is not abandoned.
    await app[appkeys.DB].execute("UPDATE files SET updated_at = ? WHERE id = ?", (utcnow(), row["id"]))
    return web.json_response({"urls": urls})


@routes.post("/dropbox/v1/files/{file_id}/complete")
async def complete(request: web.Request) -> web.Response:
    row = await owned_file(request.app, request[appkeys.USER].user_id, request.match_info["file_id"])
    status = await complete_upload(request.app, row["id"])
    if status == "failed":
        failed = await owned_file(request.app, request[appkeys.USER].user_id, row["id"])
        raise ApiError(422, "verification_failed", f"the upload failed: {failed['failure_reason']}")
    return await file_response(request, row["id"])


async def inline_upload(request: web.Request) -> web.Response:
    """Small files in one request (curl -F): the gateway streams the bytes into the store itself.

    The bytes are spooled to a temporary file while their chunk fingerprints are
    computed (memory holds one chunk), then sent through the same multipart
    path as any client upload, so the store verifies them all the same.
    """
    app = request.app
    config = app[appkeys.CONFIG]
    reader = await request.multipart()
    metadata: dict | None = None
    chunk_fps: list[str] = []
    size = 0
    with tempfile.TemporaryFile() as spool:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise bad_request("nested multipart bodies are not supported", "invalid_multipart")
            if part.name == "file_metadata":
                raw = await part.read(decode=True)
                if len(raw) > 64 * 1024:
                    raise bad_request("`file_metadata` is too large", "invalid_multipart")
                try:
                    metadata = json.loads(raw)
                except ValueError as exc:
                    raise bad_request(f"`file_metadata` is not valid JSON: {exc}", "invalid_json") from exc
                if not isinstance(metadata, dict):
                    raise bad_request("`file_metadata` must be a JSON object", "invalid_json")
            elif part.name == "file":
                buffer = bytearray()
                while data := await part.read_chunk(256 * 1024):
                    size += len(data)
                    if size > config.inline_upload_limit:
                        raise ApiError(
                            413,
                            "inline_upload_too_large",
                            f"inline uploads take at most {config.inline_upload_limit} bytes; "
                            "use the chunked upload (POST /dropbox/v1/files with JSON) for larger files",
                        )
                    buffer += data
                    while len(buffer) >= config.chunk_size:
                        chunk = bytes(buffer[: config.chunk_size])
                        del buffer[: config.chunk_size]
                        chunk_fps.append(hashlib.sha256(chunk).hexdigest())
                        spool.write(chunk)
                if buffer:
                    chunk_fps.append(hashlib.sha256(buffer).hexdigest())
                    spool.write(buffer)
                if metadata is None and part.filename:
                    metadata = {"file_name": part.filename}
            else:
                raise bad_request(f"unexpected form part {part.name!r}; send `file` and `file_metadata`", "invalid_multipart")
        if metadata is None or "file_name" not in metadata:
            raise bad_request("send a `file_metadata` part with at least `file_name`", "invalid_multipart")
        name, file_type = parse_name_and_type(metadata)
        claim = UploadClaim(name, size, file_type, file_fingerprint(chunk_fps), config.chunk_size, chunk_fps)
        file_id, created = await start_upload(app, request[appkeys.USER].user_id, claim)
        await send_spooled_chunks(app, file_id, spool)
    status = await complete_upload(app, file_id)
    if status != "uploaded":
        raise ApiError(502, "store_error", f"the store did not accept the upload (status {status})")
    return await file_response(request, file_id, status=201)


async def send_spooled_chunks(app: web.Application, file_id: str, spool) -> None:
    row = await get_file(app, file_id)
    if row["status"] != "uploading":
        return  # deduplicated, or an empty file
    store = app[appkeys.STORE]
    for chunk in await get_chunks(app, file_id):
        if chunk["status"] == "uploaded":
            continue
        spool.seek(chunk["idx"] * row["chunk_size"])
        data = spool.read(chunk["size"])
        await store.upload_part(
            content_key(row["fingerprint"]), row["upload_id"], chunk["idx"] + 1, data, hex_to_b64(chunk["fingerprint"])
        )
