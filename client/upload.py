"""Chunked, parallel, resumable uploads straight to the store.

1. Fingerprint the file in one streamed pass (``protocol.fingerprints``).
2. ``POST /files`` with the fingerprints: 201 for a new upload, 200 when resuming
   (the chunks the store already holds say ``uploaded``), or ``uploaded`` at once.
3. Send every other chunk with the presigned requests of ``POST .../upload-urls``,
   ``parallel`` at a time, each read from the file at its offset: memory never
   holds more than ``parallel x chunk_size`` bytes of the file.
4. ``POST .../complete``, then poll the file until it is ``uploaded`` or ``failed``.

A chunk that fails is retried with exponential backoff; an expired or refused
URL is replaced by a fresh one. Killing the client loses nothing: the next run
asks the gateway, which asks the store, and sends only what is missing.
"""
from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import random
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable

import aiohttp
from tqdm import tqdm

from client.api import TRANSPORT_ERRORS, GatewayClient, connection_reason, missing_chunks
from client.errors import ClientError, IntegrityError, NotFound, Refused, ServerError, StoreRefused, Unreachable, UsageError
from client.hashing import fingerprint_file, run_stoppable
from protocol.fingerprints import chunk_count, chunk_length

SLICE = 256 * 1024  # bytes handed to the socket at a time (progress and rate limiting granularity)
URL_MARGIN = 30.0  # seconds: a URL that expires sooner than this is replaced before use
STORE_DIGEST_ERRORS = ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch")


@dataclass
class UploadOptions:
    parallel: int = 4
    retries: int = 6  # attempts after the first, per chunk
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    limit_rate: float | None = None  # bytes per second over all chunks
    wait_timeout: float = 600.0  # seconds to wait for the gateway to finish after the last chunk
    quiet: bool = False
    name: str | None = None  # the file name on the server; default: the local base name


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
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"ok": True, **asdict(self)}


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0, jitter: float = 0.25) -> float:
    """Exponential: base, 2 base, 4 base ... capped, with +-jitter so workers spread out."""
    delay = min(cap, base * (2 ** attempt))
    return max(0.0, delay * (1 + random.uniform(-jitter, jitter)))


def parse_expiry(value: Any) -> float | None:
    """``expires_at`` as unix seconds, from a number or an ISO 8601 string."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


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
class _Stats:
    chunks_sent: int = 0
    bytes_sent: int = 0
    retries: int = 0
    sent_indexes: set = field(default_factory=set)


class ChunkSender:
    """Sends a set of chunks to the store, ``parallel`` at a time."""

    def __init__(self, client: GatewayClient, file_id: Any, path: str, fd: int, size: int, chunk_size: int,
                 chunk_fps: list[str], options: UploadOptions, bar: tqdm, stats: _Stats):
        self.client = client
        self.file_id = file_id
        self.path = path
        self.fd = fd
        self.size = size
        self.chunk_size = chunk_size
        self.chunk_fps = chunk_fps
        self.options = options
        self.bar = bar
        self.stats = stats
        self.limiter = RateLimiter(options.limit_rate) if options.limit_rate else None
        self._urls: dict[int, _Url] = {}
        self._url_lock = asyncio.Lock()
        self._todo: list[int] = []
        self._done: set[int] = set()
        self._batch = max(16, options.parallel * 4)

    async def send(self, indexes: list[int]) -> None:
        self._todo = list(indexes)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in indexes:
            queue.put_nowait(index)

        async def worker() -> None:
            while True:
                try:
                    index = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self.send_chunk(index)

        workers = [asyncio.create_task(worker()) for _ in range(max(1, min(self.options.parallel, len(indexes))))]
        try:
            # The first failure stops the others: a rerun resumes from what the store has.
            done, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()
            await asyncio.gather(*pending)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def url_for(self, index: int) -> _Url:
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
                        parse_expiry(item.get("expires_at")),
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise ServerError(f"the gateway answered upload-urls with a malformed entry: {item!r}") from exc
            if index not in self._urls:
                # The gateway gives no URL for a chunk the store already has.
                return None  # type: ignore[return-value]
            return self._urls[index]

    async def _read(self, index: int) -> bytes:
        """The chunk's bytes from the file, checked against its fingerprint (off the event loop)."""
        data = await asyncio.to_thread(read_chunk, self.fd, index, self.size, self.chunk_size)
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        if digest != self.chunk_fps[index]:
            raise IntegrityError(
                f"{self.path} changed since it was fingerprinted (chunk {index} differs); "
                "run `dbx upload` again once it stops changing",
                code="file_changed",
            )
        return data

    async def send_chunk(self, index: int) -> None:
        data = await self._read(index)
        last_problem = "no answer"
        unreachable = False
        for attempt in range(self.options.retries + 1):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(backoff_delay(attempt - 1, self.options.backoff_base, self.options.backoff_max))
            url = await self.url_for(index)
            if url is None:
                self._done.add(index)
                return
            written = 0

            def on_write(n: int) -> None:
                nonlocal written
                written += n
                self.bar.update(n)

            try:
                status, body = await self._put(url, data, on_write)
            except TRANSPORT_ERRORS as exc:
                self.bar.update(-written)
                unreachable = True
                last_problem = f"cannot reach the store at {_host(url.url)} ({connection_reason(exc)})"
                continue
            if 200 <= status < 300:
                self._done.add(index)
                self._urls.pop(index, None)
                if index not in self.stats.sent_indexes:
                    self.stats.sent_indexes.add(index)
                    self.stats.chunks_sent += 1
                self.stats.bytes_sent += len(data)
                return
            self.bar.update(-written)
            unreachable = False
            code = _s3_code(body)
            last_problem = f"HTTP {status}{' ' + code if code else ''}{': ' + _s3_message(body) if _s3_message(body) else ''}"
            if status == 404 and code == "NoSuchUpload":
                raise _StartOver()  # finished or abandoned: the gateway knows which
            if status == 403:
                self._urls.pop(index, None)  # expired or refused signature: ask for a fresh URL
            elif status == 400 and code in STORE_DIGEST_ERRORS:
                data = await self._read(index)  # the file changed under us: say so and stop
        if unreachable:
            raise Unreachable(
                f"{last_problem} while sending chunk {index} of {self.path}, after {self.options.retries + 1} tries; "
                "check the store, then run `dbx upload` again to resume"
            )
        raise StoreRefused(
            f"the store refused chunk {index} of {self.path} {self.options.retries + 1} times (last: {last_problem}); "
            "run `dbx upload` again to resume; if it keeps failing, tell the gateway's operator",
            status=None,
        )

    async def _put(self, url: _Url, data: bytes, on_write: Callable[[int], None]) -> tuple[int, bytes]:
        payload = ChunkPayload(data, on_write, self.limiter)
        skip = () if any(h.lower() == "content-type" for h in url.headers) else ("Content-Type",)
        async with self.client.session.request(
            url.method, url.url, data=payload, headers=url.headers, skip_auto_headers=skip,
        ) as resp:
            return resp.status, await resp.read()


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url


def _xml_field(body: bytes, name: str) -> str:
    text = body.decode("utf-8", "replace") if body else ""
    start = text.find(f"<{name}>")
    end = text.find(f"</{name}>")
    return text[start + len(name) + 2:end].strip() if 0 <= start < end else ""


def _s3_code(body: bytes) -> str:
    return _xml_field(body, "Code")


def _s3_message(body: bytes) -> str:
    return _xml_field(body, "Message")[:200]


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def make_bar(total: int, desc: str, options: UploadOptions, initial: int = 0, leave: bool = True) -> tqdm:
    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=options.quiet, dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 1.0,
        leave=leave,
    )


def note(options: UploadOptions, message: str) -> None:
    if not options.quiet:
        tqdm.write(f"dbx: {message}", file=sys.stderr)


class _StartOver(Exception):
    """The store forgot the multipart upload: announce the file again (the gateway restarts it)."""


class _Finished(Exception):
    """The gateway finished the file while chunks were still being sent (it needs no more)."""


def _failed_error(name: str, file_id: Any, path: str, reason: str | None = None) -> IntegrityError:
    why = f" ({reason})" if reason else ""
    return IntegrityError(
        f"the store's bytes for {name} (file {file_id}) did not match the fingerprints, so the gateway marked it "
        f"failed{why}; if {path} changed during the upload, upload it again (`dbx rm {file_id}` removes the failed one)",
        code="upload_failed",
    )


async def upload_file(client: GatewayClient, path: str, options: UploadOptions, config: dict | None = None) -> UploadResult:
    started = time.monotonic()
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
    config = config or await client.config()
    chunk_size = int(config["chunk_size"])
    max_size = config.get("max_file_size")
    if max_size is not None and info.st_size > int(max_size):
        raise Refused(
            f"{path} is {human_size(info.st_size)}; the gateway takes files up to {human_size(int(max_size))}",
            code="file_too_large",
        )
    name = options.name or os.path.basename(path)

    # 1. Fingerprints, one streamed pass.
    hash_bar = make_bar(info.st_size, f"hashing {_short(name)}", options, leave=False)
    try:
        fingerprint, chunk_fps, size = await run_stoppable(fingerprint_file, path, chunk_size, on_read=hash_bar.update)
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}", code="local_unreadable") from None
    finally:
        hash_bar.close()
    if size != info.st_size:
        raise IntegrityError(f"{path} changed while it was being read; run `dbx upload` again once it stops changing",
                             code="file_changed")
    total = chunk_count(size, chunk_size)
    metadata = {
        "file_name": name,
        "file_size": size,
        "fingerprint": fingerprint,
        "chunk_size": chunk_size,
        "chunks": chunk_fps,
    }
    file_type = mimetypes.guess_type(name)[0]
    if file_type:
        metadata["file_type"] = file_type

    stats = _Stats()
    result: UploadResult | None = None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}", code="local_unreadable") from None
    try:
        for round_ in range(3):
            # 2. Announce it: new (201), or resumed / already there (200).
            http_status, obj = await client.create_upload(metadata)
            file_id = obj["file_id"]
            if result is None:
                result = UploadResult(
                    path=path, file_id=file_id, file_name=obj.get("file_name", name), file_size=size,
                    fingerprint=fingerprint, status=obj.get("status", "uploading"), chunk_size=chunk_size,
                    chunks_total=total, resumed=http_status == 200 and obj.get("status") == "uploading",
                    already_uploaded=http_status == 200 and obj.get("status") == "uploaded",
                )
            result.file_id = file_id
            if obj.get("status") == "failed":
                raise _failed_error(name, file_id, path, obj.get("failure_reason"))
            server_chunks = {int(c["index"]): c for c in obj.get("chunks") or [] if isinstance(c, dict) and "index" in c}
            for index, chunk in server_chunks.items():
                if chunk.get("fingerprint") and index < total and chunk["fingerprint"] != chunk_fps[index]:
                    raise ServerError(f"the gateway's chunk {index} of file {file_id} has another fingerprint than ours")
            if obj.get("status") == "uploaded":
                if round_ == 0:
                    result.chunks_skipped = total
                    result.deduplicated = http_status == 201 and total > 0
                    note(options, f"{name}: file_id={file_id}, already in the store ({human_size(size)}), "
                                  "nothing to send")
                break
            pending = [i for i in range(total) if server_chunks.get(i, {}).get("status") != "uploaded"]
            pending_set = set(pending)
            if round_ == 0:
                result.chunks_skipped = total - len(pending)
                if result.resumed:
                    note(options, f"{name}: file_id={file_id}, resuming: {len(pending)} of {total} chunks to send "
                                  f"({result.chunks_skipped} already in the store)")
                else:
                    note(options, f"{name}: file_id={file_id}, {len(pending)} of {total} chunks to send "
                                  f"({human_size(size)})")
            already = sum(chunk_length(i, size, chunk_size) for i in range(total) if i not in pending_set)

            # 3. The bytes, straight to the store.
            bar = make_bar(size, _short(name), options, initial=already)
            sender = ChunkSender(client, file_id, path, fd, size, chunk_size, chunk_fps, options, bar, stats)
            try:
                obj = await _send_and_complete(client, sender, file_id, pending)
            except _StartOver:
                note(options, f"{name}: the store lost the upload; announcing it again")
                continue
            finally:
                bar.close()
            # 4. Wait until the gateway has verified and finished it.
            obj = await wait_until_done(client, file_id, obj, options.wait_timeout)
            break
        else:
            raise StoreRefused(f"the store kept losing the upload of {path}; try again later", code="upload_gone")
    finally:
        os.close(fd)
    assert result is not None
    result.chunks_sent = stats.chunks_sent
    result.bytes_sent = stats.bytes_sent
    result.chunk_retries = stats.retries
    result.status = obj.get("status", "")
    if result.status == "failed":
        raise _failed_error(name, result.file_id, path, obj.get("failure_reason"))
    result.seconds = round(time.monotonic() - started, 3)
    if result.chunks_sent:
        note(options, f"{name}: uploaded as file_id={result.file_id}")
    return result


async def _send_and_complete(client: GatewayClient, sender: "ChunkSender", file_id: Any, pending: list[int]) -> dict | None:
    """Send ``pending``, then ask the gateway to finish; resend what the store still lacks."""
    try:
        if pending:
            await sender.send(pending)
        for _ in range(3):
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


async def wait_until_done(client: GatewayClient, file_id: Any, obj: dict | None, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    delay = 0.1
    while obj is None or obj.get("status") not in ("uploaded", "failed"):
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


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def error_json(path: str, error: ClientError) -> dict:
    return {"ok": False, "path": path, "error": error.to_json()}
