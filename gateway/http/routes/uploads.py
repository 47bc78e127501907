"""Upload endpoints: start or resume, presigned chunk URLs, completion, inline uploads, batches of small files."""
from __future__ import annotations

import asyncio
import json
import re
import tempfile
from typing import Any, BinaryIO

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.config import MAX_CHUNKS, Config
from gateway.core.limits import Room
from gateway.core.uploads import InlineFile, Started, Target, UploadClaim
from gateway.http import appkeys
from gateway.http.errors import ApiError, api_error, bad_request
from gateway.http.parsing import FILE_ID, as_integer, decode_json, read_body, read_json, require_int, require_str
from gateway.http.views import file_response, started_json, started_response, with_thumbnails
from protocol.batches import BATCH_MAX_BYTES, BATCH_MAX_FILES
from protocol.fingerprints import chunk_count, file_fingerprint, fingerprint_bytes, fingerprint_stream, is_fingerprint
from storage import PresignedRequest

routes = web.RouteTableDef()

# A MIME type, nothing that could smuggle a header or a newline into the CDN's Content-Type.
MIME_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
DEFAULT_TYPE = "application/octet-stream"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # not text: neither database can store it
MAX_NAME = 1024
MAX_METADATA = 64 * 1024
MAX_PATH = 64 * 1024  # a path of many names of 255 bytes each; the names are checked one by one
# upload-urls answers of up to this many URLs are encoded on the event loop (about 3 us a URL), larger ones on a thread.
URLS_ENCODED_ON_LOOP = 64


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


MODES = ("add", "overwrite", "update")


def parse_target(body: dict) -> Target:
    """Where the file goes (contract v1.2, Upload into the tree): ``parent_id`` or ``path``, ``mode``, and
    ``replaces`` (which ``update`` needs). The names themselves are the core's to check (invalid_name)."""
    parent_id = require_str(body, "parent_id", max_length=64, optional=True)
    path = require_str(body, "path", max_length=MAX_PATH, optional=True)
    if parent_id is not None and path is not None:
        raise bad_request("give `parent_id` or `path`, not both", "invalid_field", field="path")
    mode = body.get("mode", "add")
    if mode not in MODES:
        raise bad_request("`mode` must be add, overwrite or update", "invalid_field", field="mode")
    replaces = require_str(body, "replaces", max_length=64, optional=True)
    if (mode == "update") != (replaces is not None):
        raise bad_request("`replaces` (a file id) goes with `mode: update`, and only with it", "invalid_field",
                          field="replaces")
    return Target(parent_id, path, mode, replaces)


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


def is_form(request: web.Request) -> bool:
    """Whether the body is ``multipart/form-data`` (an inline upload), from the header's media type alone:
    ``request.content_type`` parses the whole header with the email package, which took 2.5% of the
    gateway's Python time in bench folders (one small file a request)."""
    media_type = request.headers.get(hdrs.CONTENT_TYPE, "").partition(";")[0]
    return media_type.strip().lower() == "multipart/form-data"


# The Content-Disposition of a form part as aiohttp's client, curl and browsers write it: the part's name
# quoted, then perhaps a file name quoted, nothing escaped. Not plain, so left to aiohttp: a value holding ";"
# (its parser splits there first) and a name starting with "/" (it strips leading slashes from quoted values).
PLAIN_DISPOSITION = re.compile(r'form-data; name="((?!/)[^"\\;]*)"(?:; filename="[^"\\;]*")?')


def part_name(part: BodyPartReader) -> str | None:
    """The form part's name, as ``part.name`` gives it. A plain Content-Disposition is read here; aiohttp's
    parser, which ``part.name`` runs, took 13% of the gateway's Python time in bench folders (two parts a
    small file; it escapes all of ASCII again on every call), and reads anything else."""
    plain = PLAIN_DISPOSITION.fullmatch(part.headers.get(hdrs.CONTENT_DISPOSITION, ""))
    return plain.group(1) if plain else part.name


@routes.post("/dropbox/v1/files")
async def create_file(request: web.Request) -> web.Response:
    if is_form(request):
        return await inline_upload(request)
    core = request.app[appkeys.CORE]
    user_id = request[appkeys.USER].user_id
    body = await read_json(request)
    claim = parse_claim(body, request.app[appkeys.CONFIG])
    started = await core.uploads.begin(user_id, claim, parse_target(body))
    return await started_response(core, user_id, started, status=201 if started.created else 200)


@routes.post(f"/dropbox/v1/files/{FILE_ID}/upload-urls")
async def upload_urls(request: web.Request) -> web.Response:
    indexes: list[int] | None = None
    if (await read_body(request)).strip():
        asked = (await read_json(request)).get("chunks")
        parsed = [as_integer(i) for i in asked] if isinstance(asked, list) else None
        if parsed is None or None in parsed:
            raise bad_request("`chunks` must be a list of chunk indexes", "invalid_field", field="chunks")
        indexes = [i for i in parsed if i is not None]  # all of them: checked just above
    core = request.app[appkeys.CORE]
    presigned = await core.uploads.upload_urls(request[appkeys.USER].user_id, request.match_info["file_id"], indexes)
    # 5,120 URLs are megabytes of JSON: encoded off the event loop. A few are encoded at once: the hop to a
    # thread and back costs more than they do.
    body = urls_body(presigned) if len(presigned) <= URLS_ENCODED_ON_LOOP else await asyncio.to_thread(urls_body, presigned)
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

    Refused before a byte of the body is read when the body is declared
    (Content-Length) larger than a form of ``inline_upload_limit`` bytes can
    be (413), or when what it must hold at the least does not fit the user's
    limits (403 ``quota_exceeded``, 429 ``too_many_uploads``: see
    :func:`least_file_size`; a file the user already holds would need no
    upload slot, but which file it is shows only once it is read, so a
    non-empty one is refused while every slot is taken). While it is read,
    the whole body is held to the same bound, whatever it declared, and the
    file to the inline limit and to what is left of the user's quota: the
    spool never takes a byte more.

    A body declared small (at most FORM_ALLOWANCE bytes: what it must hold at
    the least is nothing) is read first instead, and the user's limits are
    checked in the read that looks for the file, before its bytes are stored
    (gateway/core/uploads.py's store_inline): one read a small file, not two
    (``dbx upload -r`` sends one a file), for reading at most FORM_ALLOWANCE
    bytes of a body that is then refused.

    The ``file`` part is spooled to a temporary file (memory holds one read),
    its chunk fingerprints computed from the spool (off the event loop unless it
    is small), then the core stores the bytes with their checksums, which the
    store verifies (gateway/core/uploads.py's upload_inline).
    """
    config = request.app[appkeys.CONFIG]
    core = request.app[appkeys.CORE]
    user_id = request[appkeys.USER].user_id
    limit = config.inline_upload_limit
    declared = request.content_length
    if declared is not None and declared > limit + FORM_ALLOWANCE:
        raise inline_too_large(limit)
    small = declared is not None and declared <= FORM_ALLOWANCE
    room = None
    if not small:
        least = least_file_size(declared)
        room = await core.limits.precheck(user_id, least, uploading=least > 0)
    with tempfile.TemporaryFile() as spool:
        try:
            metadata, saw_file = await _read_form(request, spool, limit, room)
        except (ValueError, HttpProcessingError) as exc:  # what aiohttp's multipart parser raises
            raise bad_request(f"the form is malformed: {exc}", "invalid_multipart") from exc
        if not saw_file:
            raise bad_request("send a `file` part with the file's bytes (and `file_metadata`)", "invalid_multipart")
        if metadata is None or "file_name" not in metadata:
            raise bad_request("send a `file_metadata` part with at least `file_name`", "invalid_multipart")
        name, file_type = parse_name_and_type(metadata)
        target = parse_target(metadata)
        hash_here = spool.tell() <= HASH_ON_LOOP
        spool.seek(0)
        if hash_here:  # hashing it costs less than the hop to a thread and back
            fingerprint, chunks, size = fingerprint_stream(spool, config.chunk_size)
        else:
            fingerprint, chunks, size = await asyncio.to_thread(fingerprint_stream, spool, config.chunk_size)
        claim = UploadClaim(name, size, file_type, fingerprint, config.chunk_size, chunks)
        started = await core.uploads.store_inline(user_id, claim, spool, target, precheck=small)
    return await started_response(core, user_id, started, status=201)


# What a form holds besides the file's bytes: the `file_metadata` part (at most MAX_METADATA) and
# the parts' headers and boundaries (a few hundred bytes from curl or a browser). A whole inline
# upload body is at most inline_upload_limit + this.
FORM_ALLOWANCE = MAX_METADATA + 64 * 1024
READ_SIZE = 256 * 1024
# Files up to this size are fingerprinted on the event loop, larger ones on a thread: SHA-256 of 16 KiB took
# about 75 us on a loaded 2-core VM (64 KiB 295 us), a hop to a thread and back 50-90 us (issue 26).
HASH_ON_LOOP = 16 * 1024


def least_file_size(declared: int | None) -> int:
    """The fewest bytes the ``file`` part of a body of ``declared`` bytes can have: the rest of the
    body is at most FORM_ALLOWANCE. What the user's limits are checked against before reading."""
    return max(0, (declared or 0) - FORM_ALLOWANCE)


def inline_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "inline_upload_too_large",
        f"inline uploads take files of at most {limit} bytes, in a form of at most {limit + FORM_ALLOWANCE}; "
        "use the chunked upload (POST /dropbox/v1/files with JSON) for larger files",
    )


async def _read_form(request: web.Request, spool: BinaryIO, limit: int,
                     room: Room | None) -> tuple[dict | None, bool]:
    """(file_metadata, whether a `file` part came), the file's bytes written to ``spool``.

    One `file` part and at most one `file_metadata` part: a second `file` part is refused, never
    added to the first. Every read checks the whole body so far (what the connection delivered)
    against the form's bound, and the file against ``limit`` and the user's ``room`` (None: a
    small body, whose limits are checked once it is read), before the bytes are written.
    """
    body = request.content
    reader = await request.multipart()

    def check_body() -> None:
        if body.total_bytes > limit + FORM_ALLOWANCE:
            raise inline_too_large(limit)

    metadata: dict | None = None
    seen: set[str] = set()
    while (part := await reader.next()) is not None:
        check_body()
        if not isinstance(part, BodyPartReader):
            raise bad_request("nested multipart bodies are not supported", "invalid_multipart")
        name = part_name(part)
        if name not in ("file", "file_metadata"):
            raise bad_request(f"unexpected form part {name!r}; send `file` and `file_metadata`", "invalid_multipart")
        if name in seen:
            raise bad_request(f"a second {name!r} part; send one `file` part and at most one `file_metadata` part",
                              "invalid_multipart")
        seen.add(name)
        if name == "file_metadata":
            metadata = parse_metadata(await part.read(decode=True))
            continue
        size = 0
        while data := await part.read_chunk(READ_SIZE):
            check_body()
            size += len(data)
            if size > limit:
                raise inline_too_large(limit)
            if room is not None:
                room.check(size)  # QuotaExceeded (403) as soon as the file passes what is left
            spool.write(data)
        if metadata is None and part.filename:
            metadata = {"file_name": part.filename}
    return metadata, "file" in seen


def parse_metadata(raw: bytes) -> dict:
    if len(raw) > MAX_METADATA:
        raise bad_request(f"`file_metadata` is over {MAX_METADATA} bytes", "invalid_multipart")
    metadata = decode_json(raw, what="`file_metadata`")
    if not isinstance(metadata, dict):
        raise bad_request("`file_metadata` must be a JSON object", "invalid_json")
    return metadata

# --- many small files in one request (beyond the contract) ------------------------------------------


@routes.post("/dropbox/v1/files/batch")
async def upload_batch(request: web.Request) -> web.Response:
    """Many small files in one request (beyond the contract, which is silent on it).

    The inline upload takes one file a request; ``dbx upload -r`` of a folder of small files then paid,
    a file, a request's whole handling, a read, a write transaction and their hand-offs to the database,
    more than the file's own work (README, "Many small files"). This takes up to BATCH_MAX_FILES files
    and BATCH_MAX_BYTES of their bytes (protocol/batches.py) in one ``multipart/form-data`` body: for
    each file a ``file_metadata`` part (the inline upload's, ``file_name`` required) and right after it
    its ``file`` part. Each file gets the checks and the answer it would get alone (gateway/core/uploads.py's
    store_batch), in the order sent: ``{"entries": [{"status": 201, "file": {...}} | {"status": 403,
    "error": {"code", "message"}}, ...]}`` (200 for the batch; an entry's ``status`` is what the file
    alone would have been answered). What is wrong with the request as a whole (a malformed form, a part
    out of place, too many files or bytes, a field of the wrong kind: ``index`` names the file) is one
    error answer, as for one inline upload, and stores nothing.
    """
    if not is_form(request):
        raise bad_request("send the files as multipart/form-data: a `file_metadata` part, then its `file` part, "
                          "for each file", "invalid_multipart")
    declared = request.content_length
    if declared is not None and declared > BATCH_MAX_BYTES + FORM_ALLOWANCE:
        raise batch_too_large()
    config = request.app[appkeys.CONFIG]
    core = request.app[appkeys.CORE]
    user_id = request[appkeys.USER].user_id
    try:
        sent = await read_batch(request, config.inline_upload_limit)
    except (ValueError, HttpProcessingError) as exc:  # what aiohttp's multipart parser raises
        raise bad_request(f"the form is malformed: {exc}", "invalid_multipart") from exc
    places = [parsed(index, metadata) for index, (metadata, _) in enumerate(sent)]
    if sum(len(data) for _, data in sent) <= HASH_ON_LOOP:  # hashing them costs less than the hop to a thread
        claims = claims_of(sent, places, config)
    else:  # one hop for the whole batch; hashlib lets go of Python's lock while it hashes
        claims = await asyncio.to_thread(claims_of, sent, places, config)
    batch = [InlineFile(claim, target, data) for claim, (_, target), (_, data) in zip(claims, places, sent, strict=True)]
    results = await core.uploads.store_batch(user_id, batch)
    entries = [await entry(request, result) for result in results]
    await with_thumbnails(core, *(found["file"] for found in entries if "file" in found))
    return web.json_response({"entries": entries})


async def entry(request: web.Request, result: Started | Exception) -> dict[str, Any]:
    """One file's entry in the answer: its file object and the status it would have had alone, or its error."""
    if isinstance(result, Started):
        file = await started_json(request.app[appkeys.CORE], request[appkeys.USER].user_id, result)
        return {"status": 201 if result.created else 200, "file": file}
    error = api_error(result)
    if error is None:  # a bug, not a refusal: the request fails as any other would
        raise result
    return {"status": error.status, **error.body()}


def parsed(index: int, metadata: dict) -> tuple[tuple[str, str], Any]:
    """((name, type), target) of the file ``index``; a 400 that names the file (``index``) if a field is wrong."""
    try:
        return parse_name_and_type(metadata), parse_target(metadata)
    except ApiError as exc:
        raise ApiError(exc.status, exc.code, f"file {index} of the batch: {exc.message}", index=index,
                       **exc.details) from None


def claims_of(sent: list[tuple[dict, bytes]], places: list[tuple[tuple[str, str], Any]],
              config: Config) -> list[UploadClaim]:
    """Each file's claim, its fingerprints computed here from its bytes (as for one inline file)."""
    claims = []
    for (_, data), ((name, file_type), _) in zip(sent, places, strict=True):
        fingerprint, chunks = fingerprint_bytes(data, config.chunk_size)
        claims.append(UploadClaim(name, len(data), file_type, fingerprint, config.chunk_size, chunks))
    return claims


def batch_too_large() -> ApiError:
    return ApiError(413, "batch_too_large",
                    f"a batch holds at most {BATCH_MAX_FILES} files and {BATCH_MAX_BYTES} bytes of them; "
                    "send the rest in another batch")


async def read_batch(request: web.Request, limit: int) -> list[tuple[dict, bytes]]:
    """(file_metadata, bytes) of each file, in the order sent. Every read checks the whole body so far (what
    the connection delivered) against the batch's bound, and each file against ``limit`` (inline_upload_limit),
    before its bytes are kept."""
    body = request.content
    reader = await request.multipart()
    sent: list[tuple[dict, bytes]] = []
    metadata: dict | None = None
    while (part := await reader.next()) is not None:
        if body.total_bytes > BATCH_MAX_BYTES + FORM_ALLOWANCE:
            raise batch_too_large()
        if not isinstance(part, BodyPartReader):
            raise bad_request("nested multipart bodies are not supported", "invalid_multipart")
        name = part_name(part)
        if name == "file_metadata" and metadata is None:
            metadata = parse_metadata(await part.read(decode=True))
            if "file_name" not in metadata:
                raise bad_request(f"file {len(sent)} of the batch: `file_metadata` must give `file_name`",
                                  "invalid_multipart", index=len(sent))
            continue
        if name != "file" or metadata is None:
            raise bad_request(f"part {name!r} out of place: send, for each file, a `file_metadata` part and "
                              "then its `file` part", "invalid_multipart", index=len(sent))
        if len(sent) == BATCH_MAX_FILES:
            raise batch_too_large()
        data = bytearray()
        while chunk := await part.read_chunk(READ_SIZE):
            if body.total_bytes > BATCH_MAX_BYTES + FORM_ALLOWANCE:
                raise batch_too_large()
            data += chunk
            if len(data) > limit:
                raise inline_too_large(limit)
        sent.append((metadata, bytes(data)))
        metadata = None
    if metadata is not None:
        raise bad_request(f"file {len(sent)} of the batch has a `file_metadata` part but no `file` part",
                          "invalid_multipart", index=len(sent))
    if not sent:
        raise bad_request("send at least one file: a `file_metadata` part, then its `file` part",
                          "invalid_multipart")
    if sum(len(data) for _, data in sent) > BATCH_MAX_BYTES:
        raise batch_too_large()
    return sent
