"""Chunked, parallel, resumable uploads straight to the store.

1. Fingerprint the file, its chunks hashed on several threads (``client.hashing``).
2. ``POST /files`` with the fingerprints: 201 for a new upload, 200 when resuming
   (the chunks the store already holds say ``uploaded``), or ``uploaded`` at once.
3. Send every other chunk with the presigned requests of ``POST .../upload-urls``,
   ``parallel`` at a time, each read from the file at its offset: memory never
   holds more than ``parallel x chunk_size`` bytes of the file.
4. ``POST .../complete``, then poll the file until it is ``uploaded`` or ``failed``.

A chunk is not hashed again before it is sent: its presigned request signs the
chunk's SHA-256 as a header, so the store itself refuses other bytes (a digest
error), and only then does the client read the chunk again to tell a file
that changed under it from a transient failure. A chunk that fails is retried
with exponential backoff; an expired or refused URL is replaced by a fresh one.
Killing the client loses nothing: the next run asks the gateway, which asks the
store, and sends only what is missing.
"""
from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from tqdm import tqdm

from client.api import TRANSPORT_ERRORS, GatewayClient, missing_chunks
from client.errors import ClientError, IntegrityError, NotFound, Refused, ServerError, StoreRefused, Unreachable, UsageError
from client.hashing import FileChanged, FingerprintPass
from client.output import human_size, parse_time
from client.transfer import ChunkTransfer, Retry, TransferOptions, make_bar, note, short, transport_problem, with_retries
from protocol.fingerprints import chunk_fingerprint, chunk_length
from protocol.states import FINAL_FILE_STATUSES, ChunkStatus, FileStatus

SLICE = 256 * 1024  # bytes handed to the socket at a time (progress and rate limiting granularity)
URL_MARGIN = 30.0  # seconds: a URL that expires sooner than this is replaced before use
STORE_DIGEST_ERRORS = ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch")


@dataclass
class UploadOptions(TransferOptions):
    limit_rate: float | None = None  # bytes per second over all chunks
    wait_timeout: float = 600.0  # seconds to wait for the gateway to finish after the last chunk
    name: str | None = None  # the file name on the server; default: the local base name
    place: dict = field(default_factory=dict)  # where in the tree, how a taken name is met: path or parent_id, mode


@dataclass
class UploadResult:
    path: str
    file_id: Any
    file_name: str
    file_size: int
    fingerprint: str
    status: str
    chunk_size: int
    chunks_total: int
    chunks_skipped: int = 0  # already in the store when this run started
    chunks_sent: int = 0  # sent by this run (each counted once, however many attempts)
    bytes_sent: int = 0
    chunk_retries: int = 0
    resumed: bool = False  # an earlier, unfinished upload of this file was continued
    already_uploaded: bool = False  # this file (same name and content) was already uploaded
    deduplicated: bool = False  # a new file whose content this user already had: no bytes moved
    remote_path: str | None = None  # where it is in the tree (contract v1.2), as the gateway says
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"ok": True, **asdict(self)}


class RateLimiter:
    """Spreads bytes over time: every caller reserves the next free slot."""

    def __init__(self, rate: float):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._next = time.monotonic()

    async def acquire(self, nbytes: int) -> None:
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + nbytes / self.rate
        if start > now:
            await asyncio.sleep(start - now)


class ChunkPayload(aiohttp.payload.Payload):
    """A chunk's bytes, written in slices so progress and rate limits are smooth."""

    def __init__(self, data: bytes, on_write: Callable[[int], None], limiter: RateLimiter | None):
        super().__init__(data, content_type="application/octet-stream")
        self._data = memoryview(data)
        self._size = len(data)
        self._on_write = on_write
        self._limiter = limiter

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._data).decode(encoding, errors)

    async def write(self, writer) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer, content_length: int | None) -> None:
        view = self._data if content_length is None else self._data[:content_length]
        for start in range(0, len(view), SLICE):
            piece = view[start:start + SLICE]
            if self._limiter:
                await self._limiter.acquire(len(piece))
            await writer.write(piece)
            self._on_write(len(piece))


def read_chunk(fd: int, index: int, size: int, chunk_size: int) -> bytes:
    """Chunk ``index`` read at its offset (positional reads: safe from many threads)."""
    length = chunk_length(index, size, chunk_size)
    offset = index * chunk_size
    parts = []
    got = 0
    while got < length:
        data = os.pread(fd, length - got, offset + got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


@dataclass
class _Url:
    url: str
    method: str
    headers: dict
    expires_at: float | None

    def fresh(self) -> bool:
        return self.expires_at is None or self.expires_at - time.time() > URL_MARGIN


@dataclass
class LocalFile:
    """The file being uploaded: where it is, and the fingerprints it had when the upload began."""

    path: str
    fd: int
    size: int
    chunk_size: int
    chunk_fps: list[str]

    def changed(self, index: int) -> IntegrityError:
        return IntegrityError(
            f"{self.path} changed since it was fingerprinted (chunk {index} differs); "
            "run `dbx upload` again once it stops changing",
            code="file_changed",
        )


@dataclass
class _Stats:
    chunks_sent: int = 0
    bytes_sent: int = 0
    retries: int = 0
    sent_indexes: set = field(default_factory=set)


class _StartOver(Exception):
    """The store forgot the multipart upload: announce the file again (the gateway restarts it)."""


class _Finished(Exception):
    """The gateway finished the file while chunks were still being sent (it needs no more)."""


class ChunkSender(ChunkTransfer):
    """Sends a set of chunks of one upload to the store, ``parallel`` at a time."""

    options: UploadOptions

    def __init__(self, client: GatewayClient, file_id: Any, local: LocalFile, options: UploadOptions, bar: tqdm,
                 stats: _Stats):
        super().__init__(client, file_id, options, bar)
        self.local = local
        self.stats = stats
        self.limiter = RateLimiter(options.limit_rate) if options.limit_rate else None
        self._urls: dict[int, _Url] = {}
        self._url_lock = asyncio.Lock()
        self._todo: list[int] = []
        self._done: set[int] = set()
        self._batch = max(16, options.parallel * 4)

    async def send(self, indexes: list[int]) -> None:
        self._todo = list(indexes)
        await self.each(indexes, self.send_chunk)

    async def url_for(self, index: int) -> _Url | None:
        """A fresh presigned request for chunk ``index`` (asked for in batches); None when the store has it."""
        async with self._url_lock:
            cached = self._urls.get(index)
            if cached is not None and cached.fresh():
                return cached
            wanted = [index] + [
                i for i in self._todo
                if i != index and i not in self._done and not (i in self._urls and self._urls[i].fresh())
            ][: self._batch - 1]
            try:
                items = await self.client.upload_urls(self.file_id, wanted)
            except Refused as exc:
                if exc.status == 409:
                    raise _Finished() from None  # the file is no longer uploading: nothing more to send
                raise
            for item in items:
                try:
                    self._urls[int(item["index"])] = _Url(
                        item["url"], str(item.get("method") or "PUT").upper(), dict(item.get("headers") or {}),
                        parse_time(item.get("expires_at")),
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise ServerError(f"the gateway answered upload-urls with a malformed entry: {item!r}") from exc
            return self._urls.get(index)  # the gateway gives no URL for a chunk the store already has

    async def _read(self, index: int) -> bytes:
        """The chunk's bytes from the file (off the event loop)."""
        local = self.local
        return await asyncio.to_thread(read_chunk, local.fd, index, local.size, local.chunk_size)

    async def _read_unchanged(self, index: int) -> bytes:
        """The chunk's bytes, read again after the store refused them: still those we fingerprinted?"""
        data = await self._read(index)
        if await asyncio.to_thread(chunk_fingerprint, data) != self.local.chunk_fps[index]:
            raise self.local.changed(index)
        return data

    async def send_chunk(self, index: int) -> None:
        data = await self._read(index)

        async def attempt() -> None:
            nonlocal data
            url = await self.url_for(index)
            if url is None:
                self._done.add(index)
                return
            status, body = await self._put(url, data)
            if 200 <= status < 300:
                self._sent(index, len(data))
                return
            code = _xml_field(body, "Code")
            message = _xml_field(body, "Message")[:200]
            if status == 404 and code == "NoSuchUpload":
                raise _StartOver()  # finished or abandoned: the gateway knows which
            if status == 403:
                self._urls.pop(index, None)  # expired or refused signature: ask for a fresh URL
            elif status == 400 and code in STORE_DIGEST_ERRORS:
                data = await self._read_unchanged(index)  # the file changed under us: say so and stop
            raise Retry(f"HTTP {status}{' ' + code if code else ''}{': ' + message if message else ''}")

        def give_up(last: Retry) -> ClientError:
            tries = self.options.retries + 1
            if last.unreachable:
                return Unreachable(f"{last.problem} while sending chunk {index} of {self.local.path}, after {tries} "
                                   "tries; check the store, then run `dbx upload` again to resume")
            return StoreRefused(f"the store refused chunk {index} of {self.local.path} {tries} times (last: "
                                f"{last.problem}); run `dbx upload` again to resume; if it keeps failing, tell the "
                                "gateway's operator")

        def count_retry() -> None:
            self.stats.retries += 1

        await with_retries(attempt, self.options, give_up, count_retry)

    def _sent(self, index: int, length: int) -> None:
        self._done.add(index)
        self._urls.pop(index, None)
        if index not in self.stats.sent_indexes:
            self.stats.sent_indexes.add(index)
            self.stats.chunks_sent += 1
        self.stats.bytes_sent += length

    async def _put(self, url: _Url, data: bytes) -> tuple[int, bytes]:
        """One PUT of the chunk; its bytes count on the progress bar only if the store took them."""
        written = 0

        def on_write(n: int) -> None:
            nonlocal written
            written += n
            self.bar.update(n)

        payload = ChunkPayload(data, on_write, self.limiter)
        skip = () if any(h.lower() == "content-type" for h in url.headers) else ("Content-Type",)
        try:
            async with self.client.session.request(
                url.method, url.url, data=payload, headers=url.headers, skip_auto_headers=skip,
            ) as resp:
                answer = resp.status, await resp.read()
        except TRANSPORT_ERRORS as exc:
            self.bar.update(-written)
            raise Retry(transport_problem(exc, f"the store at {urlsplit(url.url).netloc or url.url}")[0],
                        unreachable=True) from exc
        if not 200 <= answer[0] < 300:
            self.bar.update(-written)
        return answer


def _xml_field(body: bytes, name: str) -> str:
    """A field of the store's XML error body (``Code``, ``Message``), or ''."""
    text = body.decode("utf-8", "replace") if body else ""
    start = text.find(f"<{name}>")
    end = text.find(f"</{name}>")
    return text[start + len(name) + 2:end].strip() if 0 <= start < end else ""


def _failed_error(name: str, file_id: Any, path: str, reason: str | None = None) -> IntegrityError:
    why = f" ({reason})" if reason else ""
    return IntegrityError(
        f"the store's bytes for {name} (file {file_id}) did not match the fingerprints, so the gateway marked it "
        f"failed{why}; if {path} changed during the upload, upload it again (`dbx rm {file_id}` removes the failed one)",
        code="upload_failed",
    )


# -- one file ----------------------------------------------------------------------------


def check_local_file(path: str, max_size: Any) -> int:
    """The size of ``path``, once it is known to be a regular file the gateway takes."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}", code="local_not_found") from None
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}", code="local_unreadable") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{path} is a directory; dbx uploads files (try `dbx upload {path.rstrip('/')}/*`)")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is not a regular file; dbx uploads files it can read twice")
    if max_size is not None and info.st_size > int(max_size):
        raise Refused(
            f"{path} is {human_size(info.st_size)}; the gateway takes files up to {human_size(int(max_size))}",
            code="file_too_large",
        )
    return info.st_size


def start_hashing(path: str, chunk_size: int, early: FingerprintPass | None) -> FingerprintPass:
    """The file's fingerprint pass: ``early`` if it hashes this file in chunks of this size, else a new one.

    ``early`` was started before the gateway's chunk size was known (see cli.start_fingerprint).
    """
    if early is not None and (early.path, early.chunk_size) == (path, chunk_size):
        return early
    if early is not None:
        early.cancel()
    return FingerprintPass(path, chunk_size)


async def fingerprint(hashing: FingerprintPass, name: str, size: int, options: UploadOptions) -> tuple[str, list[str]]:
    """The file's and its chunks' fingerprints when the pass is done, with a progress bar meanwhile."""
    path = hashing.path
    bar = make_bar(size, f"hashing {short(name)}", options, leave=False)
    try:
        file_fp, chunk_fps, hashed = await hashing.result(bar.update)
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}", code="local_unreadable") from None
    except FileChanged:
        hashed = -1
    finally:
        bar.close()
    if hashed != size:
        raise IntegrityError(f"{path} changed while it was being read; run `dbx upload` again once it stops changing",
                             code="file_changed")
    return file_fp, chunk_fps


def claim(name: str, size: int, file_fp: str, chunk_size: int, chunk_fps: list[str], file_type: str | None) -> dict:
    """The body of ``POST /files``."""
    body = {"file_name": name, "file_size": size, "fingerprint": file_fp, "chunk_size": chunk_size,
            "chunks": chunk_fps}
    if file_type:
        body["file_type"] = file_type
    return body


class Upload:
    """One file's way into the store: announce it, send what the store lacks, finish it."""

    def __init__(self, client: GatewayClient, local: LocalFile, metadata: dict, options: UploadOptions,
                 before_complete: Callable[[], None] | None = None):
        self.client = client
        self.before_complete = before_complete  # raises to stop before the file is committed (dbx sync's stat)
        self.local = local
        self.metadata = metadata
        self.name = metadata["file_name"]
        self.options = options
        self.stats = _Stats()
        self.total = len(local.chunk_fps)
        self.result = UploadResult(
            path=local.path, file_id=None, file_name=self.name, file_size=local.size,
            fingerprint=metadata["fingerprint"], status=FileStatus.UPLOADING, chunk_size=local.chunk_size,
            chunks_total=self.total,
        )

    async def run(self) -> UploadResult:
        obj: dict | None
        for round_ in range(3):  # the store may forget a multipart upload: announce it again
            obj, pending = await self.announce(first=round_ == 0)
            if obj.get("status") == FileStatus.UPLOADED:
                break
            try:
                obj = await self.send(obj["file_id"], pending)
            except _StartOver:
                note(self.options, f"{self.name}: the store lost the upload; announcing it again")
                continue
            obj = await wait_until_done(self.client, self.result.file_id, obj, self.options.wait_timeout)
            break
        else:
            raise StoreRefused(f"the store kept losing the upload of {self.local.path}; try again later",
                               code="upload_gone")
        result = self.result
        result.chunks_sent, result.bytes_sent = self.stats.chunks_sent, self.stats.bytes_sent
        result.chunk_retries = self.stats.retries
        result.status = obj.get("status", "")
        result.remote_path = obj.get("path", result.remote_path)
        if result.status == FileStatus.FAILED:
            raise _failed_error(self.name, result.file_id, self.local.path, obj.get("failure_reason"))
        if result.chunks_sent:
            note(self.options, f"{self.name}: uploaded as file_id={result.file_id}")
        return result

    async def announce(self, first: bool) -> tuple[dict, list[int]]:
        """``POST /files``: (the file object, the chunks the store lacks); new (201), resumed or done (200)."""
        http_status, obj = await self.client.create_upload(self.metadata)
        file_id = self.result.file_id = obj["file_id"]
        status = obj.get("status")
        if first:
            self.result.file_name = obj.get("file_name", self.name)
            self.result.resumed = http_status == 200 and status == FileStatus.UPLOADING
            self.result.already_uploaded = http_status == 200 and status == FileStatus.UPLOADED
        if status == FileStatus.FAILED:
            raise _failed_error(self.name, file_id, self.local.path, obj.get("failure_reason"))
        server_chunks = {int(c["index"]): c for c in obj.get("chunks") or [] if isinstance(c, dict) and "index" in c}
        for index, chunk in server_chunks.items():
            if chunk.get("fingerprint") and index < self.total and chunk["fingerprint"] != self.local.chunk_fps[index]:
                raise ServerError(f"the gateway's chunk {index} of file {file_id} has another fingerprint than ours")
        pending = [] if status == FileStatus.UPLOADED else [
            i for i in range(self.total) if server_chunks.get(i, {}).get("status") != ChunkStatus.UPLOADED]
        if first:
            self.result.chunks_skipped = self.total - len(pending)
            self.result.deduplicated = status == FileStatus.UPLOADED and http_status == 201 and self.total > 0
            note(self.options, f"{self.name}: file_id={file_id}, " + (
                f"already in the store ({human_size(self.local.size)}), nothing to send" if status == FileStatus.UPLOADED else
                f"resuming: {len(pending)} of {self.total} chunks to send ({self.result.chunks_skipped} already in "
                "the store)" if self.result.resumed else
                f"{len(pending)} of {self.total} chunks to send ({human_size(self.local.size)})"))
        return obj, pending

    async def send(self, file_id: Any, pending: list[int]) -> dict | None:
        """The missing chunks, straight to the store, then ``complete``: the file object if it came with it."""
        local = self.local
        missing = set(pending)
        already = sum(chunk_length(i, local.size, local.chunk_size) for i in range(self.total) if i not in missing)
        bar = make_bar(local.size, short(self.name), self.options, initial=already)
        try:
            sender = ChunkSender(self.client, file_id, local, self.options, bar, self.stats)
            return await _send_and_complete(self.client, sender, file_id, pending, self.before_complete)
        finally:
            bar.close()


async def upload_file(client: GatewayClient, path: str, options: UploadOptions, config: dict | None = None,
                      early: FingerprintPass | None = None) -> UploadResult:
    """One file into the store; ``early``: its fingerprint pass if one was started already."""
    started = time.monotonic()
    config = config or await client.config()
    chunk_size = int(config["chunk_size"])
    size = check_local_file(path, config.get("max_file_size"))
    name = options.name or os.path.basename(path)
    try:
        hashing = start_hashing(path, chunk_size, early)
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}", code="local_unreadable") from None
    file_type = mimetypes.guess_type(name)[0]  # while the chunks are hashed: the first call reads the system's types
    file_fp, chunk_fps = await fingerprint(hashing, name, size, options)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}", code="local_unreadable") from None
    try:
        local = LocalFile(path, fd, size, chunk_size, chunk_fps)
        metadata = {**claim(name, size, file_fp, chunk_size, chunk_fps, file_type), **options.place}
        result = await Upload(client, local, metadata, options).run()
    finally:
        os.close(fd)
    result.seconds = round(time.monotonic() - started, 3)
    return result


async def _send_and_complete(client: GatewayClient, sender: ChunkSender, file_id: Any, pending: list[int],
                             before_complete: Callable[[], None] | None = None) -> dict | None:
    """Send ``pending``, then ask the gateway to finish; resend what the store still lacks.

    ``before_complete`` runs after the chunks are sent, before each ``complete``: it raises to stop there.
    """
    try:
        if pending:
            await sender.send(pending)
        for _ in range(3):
            if before_complete is not None:
                before_complete()
            try:
                status, body = await client.complete(file_id)
            except Refused as exc:
                if exc.status == 422 or exc.code == "verification_failed":
                    return None  # failed: wait_until_done fetches the file object and its reason
                raise
            if status == 200:
                return body
            error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
            if error.get("code") == "upload_gone":
                raise _StartOver()
            missing = missing_chunks(body)
            if not missing:
                return None  # a 409 without a list: poll
            await sender.send(sorted(set(missing)))
    except _Finished:
        return None
    return None


# noqa below: the deadline ends the polling with a ServerError that says what to do, not with a cancellation.
async def wait_until_done(client: GatewayClient, file_id: Any, obj: dict | None, timeout: float) -> dict:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    delay = 0.1
    while obj is None or obj.get("status") not in FINAL_FILE_STATUSES:
        if time.monotonic() > deadline:
            raise ServerError(
                f"the gateway has not finished file {file_id} after {timeout:.0f}s; "
                f"check later with `dbx info {file_id}`, or run `dbx upload` again",
                code="not_finished",
            )
        if obj is not None:
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
        obj = await client.get_file(file_id)
    return obj


def error_json(path: str, error: ClientError) -> dict:
    return {"ok": False, "path": path, "error": error.to_json()}
