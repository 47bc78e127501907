"""Verified, resumable, parallel downloads from the CDN tier.

The file object lists each chunk's fingerprint (the SHA-256 of its bytes), and
the file's fingerprint is made of those (``protocol.fingerprints``), so a
download can be checked chunk by chunk as it arrives:

1. ``TARGET.part`` is made at the file's full size beside the target, and
   ``TARGET.part.json`` (the sidecar) names the content it is for.
2. ``parallel`` workers fetch the missing chunks, one Range request per chunk
   (the CDN tier caches chunk-sized slices, so a chunk is one cache entry). A
   worker holds its chunk in memory, checks its SHA-256 and writes it at its
   offset with ``os.pwrite``. Wrong bytes never reach the part; memory holds at
   most ``parallel x chunk_size`` bytes of the file. About once a second the
   part is flushed to disk and only then are the chunks written so far listed
   in the sidecar.
3. With every chunk in, the file's fingerprint follows from the chunk digests
   (no second read of the file) and the part is renamed onto the target.

After a crash or Ctrl-C the next run re-checks the chunks the sidecar lists
(bytes left on disk are never trusted unread) and fetches only the others. A
CDN that ignores Range (it answers 200 with the whole body) is read as one
stream instead, cut into chunks that are checked and written the same way.

The part and the sidecar are written only as regular files dbx opened without
following links (``O_NOFOLLOW``), with no other name: in a directory others can
write to, a ``TARGET.part`` planted as a link to one of the user's files (with
a sidecar that fits) must not make dbx write into that file. Something else at
those names is refused, naming it (with ``--force``: the name is removed, never
what it leads to); the finished part is placed only if its name still holds the
file dbx wrote, and placing it follows no link either.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, TypeVar
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urljoin

import aiohttp
from tqdm import tqdm

from client.api import TRANSPORT_ERRORS, GatewayClient
from client.errors import (ClientError, IntegrityError, LocalExists, NotFound, Refused, ServerError, StoreRefused,
                           Unreachable, UsageError)
from client.hashing import chunk_digest, verify_chunks
from client.output import CONTROL, printable
from client.transfer import ChunkTransfer, Retry, TransferOptions, make_bar, note, transport_problem, with_retries
from protocol.fingerprints import DEFAULT_CHUNK_SIZE, chunk_count, chunk_length, file_fingerprint, is_fingerprint
from protocol.states import FileStatus

PIECE = 1024 * 1024  # bytes read from the network at a time (the progress bar's step)
# Seconds between disk flushes of the part. A flush after every chunk slowed downloads
# down measurably; this way a crash (kill -9, power loss) loses at most this much work.
SYNC_EVERY = 1.0
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
flush_to_disk = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


@dataclass
class DownloadOptions(TransferOptions):
    force: bool = False  # overwrite an existing local file


@dataclass
class DownloadResult:
    file_id: Any
    file_name: str
    path: str
    file_size: int
    fingerprint: str
    chunks_total: int = 0
    chunks_fetched: int = 0  # fetched and verified by this run
    chunks_reused: int = 0  # left by an earlier run, verified again on disk
    resumed_from: int = 0  # bytes of the reused chunks
    bytes_received: int = 0  # bytes of the chunks this run fetched
    range_requests: bool = True  # False when the CDN ignored Range and the file came as one stream
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"ok": True, **asdict(self)}


# -- long reads that Ctrl-C stops --------------------------------------------------------


class Stopped(Exception):
    """A thread was told to stop (the command was interrupted)."""


T = TypeVar("T")


async def run_stoppable(fn: Callable[..., T], *args: Any, on_read: Callable[[int], None] | None = None) -> T:
    """Run a long read in a thread; cancelling the caller stops it at its next read.

    ``fn`` takes ``on_read`` as its last argument. Without this, Ctrl-C while a
    large partial download is checked would wait for the whole pass to finish.
    """
    stop = threading.Event()

    def checked(n: int) -> None:
        if stop.is_set():
            raise Stopped()
        if on_read:
            on_read(n)

    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, checked))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        try:
            await task
        except Stopped:
            pass
        raise


# -- where the bytes go ------------------------------------------------------------------


def safe_name(name: str, fallback: str) -> str:
    """A name the sharer chose, made a harmless local base name.

    No directories (its base name only), no dot file (a shared ``.bashrc``
    must not land on ``~/.bashrc``: leading dots go), no control characters
    (they would reach the terminal in messages); nothing left: ``fallback``.
    """
    base = os.path.basename(str(name).replace("\\", "/"))
    base = CONTROL.sub("_", base).strip().lstrip(".").strip()
    return base or fallback


def resolve_target(output: str | None, file_name: str, file_id: Any) -> str:
    """Where the file goes: ``-o PATH`` as given, else the remote name made safe, here or in ``-o DIR``."""
    name = safe_name(file_name, re.sub(r"[^A-Za-z0-9_-]", "_", f"file-{file_id}"))
    if not output:
        return os.path.abspath(name)
    if os.path.isdir(output) or output.endswith(os.sep):
        return os.path.abspath(os.path.join(output, name))
    return os.path.abspath(output)


def refuse_existing(target: str, force: bool) -> None:
    if not force and os.path.lexists(target):
        raise LocalExists(f"{target} exists; dbx download overwrites only with --force (or pick another name with -o)")


def place(part: str, target: str, force: bool) -> None:
    """Move the finished part onto ``target``; without ``force``, never over a file that is there.

    A hard link fails if the target exists, atomically, however late it
    appeared; where links are not possible, the check is made just before.
    Neither follows a link: ``os.replace`` onto a link replaces the link itself,
    and the hard link is made to the part's name, not to where a link there leads.
    """
    if force:
        os.replace(part, target)
        return
    try:
        os.link(part, target, follow_symlinks=False)
    except FileExistsError:
        refuse_existing(target, force)
        raise
    except OSError:
        refuse_existing(target, force)
        os.replace(part, target)
        return
    os.unlink(part)


def sidecar_path(target: str) -> str:
    return target + ".part.json"


def part_path(target: str) -> str:
    return target + ".part"


def partial_paths(target: str) -> tuple[str, str, str]:
    """Every name dbx writes beside ``target`` while it downloads: the part, the sidecar, the sidecar's next version."""
    return part_path(target), sidecar_path(target), sidecar_path(target) + ".tmp"


# -- never through a link -----------------------------------------------------------------

NOT_OURS = "not_a_partial_download"  # the error code of something dbx did not make at one of those names
DIRECTORY = "a directory"


def found_at(path: str) -> str | None:
    """What is at ``path`` if dbx must not write there; None for nothing, or a regular file with no other name."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(found.st_mode):
        try:
            return f"a symbolic link to {os.readlink(path)}"
        except OSError:
            return "a symbolic link"
    if stat.S_ISDIR(found.st_mode):
        return DIRECTORY
    if not stat.S_ISREG(found.st_mode):
        return "a special file (a FIFO, socket or device)"
    if found.st_nlink > 1:
        others = found.st_nlink - 1
        return f"a file that has {others} other hard link{'s' if others > 1 else ''} (writing it would change those too)"
    return None


def not_ours(path: str, found: str) -> LocalExists:
    remedy = "remove it or pick another name with -o" if found == DIRECTORY else \
        "remove it, pick another name with -o, or pass --force to replace it (the name only: what it leads to is left alone)"
    return LocalExists(printable(f"{path} is {found}, not a partial download dbx made; dbx writes only into its own "
                                 f"files there: {remedy}"), code=NOT_OURS)


def clear_partial_names(target: str, force: bool) -> None:
    """Refuse what dbx did not make at the names of its partial download; with ``force``, remove the name."""
    for path in partial_paths(target):
        found = found_at(path)
        if found is None:
            continue
        if force and found != DIRECTORY:
            os.unlink(path)  # a link itself, never what it leads to
            continue
        raise not_ours(path, found)


def open_own(path: str, flags: int) -> int:
    """``os.open`` for a file dbx writes beside the target: a regular file with no other name, never through a link.

    The last guard, for what changed since :func:`clear_partial_names` looked:
    ``O_NOFOLLOW`` refuses a link, the open file itself is checked after.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)  # O_NONBLOCK: a FIFO must not hang here
    except OSError:
        found = found_at(path)
        if found is None:
            raise
        raise not_ours(path, found) from None
    opened = os.fstat(fd)
    if stat.S_ISREG(opened.st_mode) and opened.st_nlink == 1:
        return fd
    os.close(fd)
    raise not_ours(path, found_at(path) or "not a regular file")


def read_sidecar(target: str) -> dict | None:
    try:
        fd = os.open(sidecar_path(target), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with open(fd, encoding="utf-8") as f:
            data = json.load(f) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_sidecar(target: str, meta: dict) -> None:
    """Replace the sidecar atomically: a crash leaves the old one or the new one, never half of one.

    The next version is a new file (``O_EXCL``: what a name held is never written
    through), renamed onto the sidecar's name (onto a link there: the link itself).
    """
    tmp = partial_paths(target)[2]
    try:
        os.unlink(tmp)  # left by a crash
    except FileNotFoundError:
        pass
    with open(open_own(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w", encoding="utf-8") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, sidecar_path(target))


def remove_partial(target: str) -> None:
    for path in partial_paths(target):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def to_ranges(indexes: Iterable[int]) -> list[list[int]]:
    """[0, 1, 2, 5, 7, 8] -> [[0, 2], [5, 5], [7, 8]]: the sidecar stays small however many chunks are done."""
    ranges: list[list[int]] = []
    for index in sorted(indexes):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ranges


def from_ranges(ranges: Any, count: int) -> set[int]:
    """The chunk indexes below ``count`` that ``ranges`` names; nothing if it is malformed."""
    if not isinstance(ranges, list):
        return set()
    indexes: set[int] = set()
    for item in ranges:
        if not (isinstance(item, list) and len(item) == 2 and all(type(i) is int for i in item)):
            return set()
        indexes.update(range(max(item[0], 0), min(item[1], count - 1) + 1))
    return indexes


def claimed_chunks(target: str, meta: dict, count: int) -> set[int]:
    """The chunks an earlier run of this very content says it verified and wrote, if its part is still there."""
    previous = read_sidecar(target)
    if previous is None or any(previous.get(k) != meta[k] for k in ("fingerprint", "file_size", "chunk_size")):
        return set()
    try:
        if os.lstat(part_path(target)).st_size != meta["file_size"] or found_at(part_path(target)):
            return set()
    except OSError:
        return set()
    return from_ranges(previous.get("chunks_done"), count)


class ChunkMismatch(Exception):
    """A chunk's bytes do not have its fingerprint."""

    def __init__(self, index: int, digest: str):
        super().__init__(index, digest)
        self.index = index
        self.digest = digest


class PartFile:
    """``TARGET.part`` and its sidecar: which chunks are verified and safely on disk.

    ``store`` runs in worker threads (hashing and disk writes stay off the event
    loop), so the bookkeeping is changed under a lock.
    """

    def __init__(self, target: str, meta: dict, chunk_fps: list[str], done: set[int], fd: int):
        self.target = target
        self.meta = meta
        self.chunk_fps = chunk_fps
        self.chunk_size = int(meta["chunk_size"])
        self.digests = {index: chunk_fps[index] for index in done}  # index -> digest of every chunk written
        self._recorded: set[int] | None = None  # the chunks the sidecar lists (None: not written by us yet)
        self._synced_at = float("-inf")
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._fd = fd
        opened = os.fstat(fd)
        self.identity = (opened.st_dev, opened.st_ino)  # the part's name must still lead here when it is placed

    @classmethod
    def open(cls, target: str, meta: dict, chunk_fps: list[str], claimed: set[int],
             on_read: Callable[[int], None] | None = None) -> PartFile:
        """Keep the ``claimed`` chunks of an earlier run that still check out; else start a new part (blocking)."""
        size = int(meta["file_size"])
        if not claimed:
            remove_partial(target)
        fd = open_own(part_path(target), os.O_RDWR | (0 if claimed else os.O_CREAT | os.O_EXCL))
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)  # sparse: each chunk is written at its offset
            expected = {index: chunk_fps[index] for index in claimed}
            done = verify_chunks(fd, int(meta["chunk_size"]), size, expected, on_read) if claimed else set()
        except BaseException:
            os.close(fd)
            raise
        part = cls(target, meta, chunk_fps, done, fd)
        if claimed and done == claimed:
            part._recorded = done
        else:
            part.sync()  # a new part, or chunks that no longer check out: the sidecar says so now
        return part

    def missing(self) -> list[int]:
        return [index for index in range(len(self.chunk_fps)) if index not in self.digests]

    def store(self, index: int, pieces: list[bytes]) -> None:
        """Check a chunk (its bytes as received, in pieces) against its fingerprint, then write it at its offset."""
        digest = chunk_digest(pieces)
        if digest != self.chunk_fps[index]:
            raise ChunkMismatch(index, digest)
        offset = index * self.chunk_size
        for piece in pieces:  # piece by piece: joining them would cost a copy of the chunk
            view = memoryview(piece)
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
        with self._lock:
            self.digests[index] = digest
            due = time.monotonic() - self._synced_at >= SYNC_EVERY
            if due:
                self._synced_at = time.monotonic()
        if due:
            self.sync()

    def sync(self) -> None:
        """Flush the chunks written so far to disk, then list them in the sidecar.

        In that order, so that the sidecar never lists bytes a crash could still lose.
        """
        with self._sync_lock:
            with self._lock:
                written = set(self.digests)
            if written == self._recorded:
                return
            flush_to_disk(self._fd)
            write_sidecar(self.target, {**self.meta, "chunks_done": to_ranges(written)})
            self._recorded = written

    def fingerprint(self) -> str:
        """The file's fingerprint from the chunk digests, with no second read of the file."""
        return file_fingerprint(self.digests[index] for index in range(len(self.chunk_fps)))

    def close(self) -> None:
        """Record what is written (after Ctrl-C or a failure too: the next run resumes from it)."""
        if self._fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1

    def check_still_here(self) -> None:
        """Refuse to place the part if its name now leads to something else than the file written."""
        path = part_path(self.target)
        try:
            now = os.lstat(path)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != self.identity:
            found = found_at(path) or ("another file" if now else "gone")
            raise LocalExists(printable(f"{path} was replaced while dbx downloaded into it (it is now {found}); "
                                        f"nothing was written to {self.target}: run `dbx download` again"),
                              code=NOT_OURS)


def checked_chunk_fingerprints(obj: dict, file_id: Any, size: int, chunk_size: int) -> list[str]:
    """The file object's chunk fingerprints, in order, once they are known to make up its fingerprint.

    Verifying each chunk against them then verifies the whole file.
    """
    chunks = obj["chunks"] if isinstance(obj.get("chunks"), list) else []
    by_index = {c.get("index"): c.get("fingerprint") for c in chunks if isinstance(c, dict)}
    fps = [by_index.get(index) for index in range(chunk_count(size, chunk_size))]
    if not all(is_fingerprint(fp) for fp in fps) or file_fingerprint(fps) != obj.get("fingerprint"):  # type: ignore[arg-type]
        raise ServerError(f"the gateway's file object for file {file_id} lists chunks that do not make up its "
                          "fingerprint, so the download could not be verified; tell the gateway's operator",
                          code="inconsistent_file")
    return fps  # type: ignore[return-value]


# -- fetching ----------------------------------------------------------------------------


class UrlRefused(Exception):
    """The CDN refused the signed URL (HTTP 403): expired, or altered."""


class RangeIgnored(Exception):
    """The CDN answered a Range request with the whole file (HTTP 200)."""


class ChunkFetcher(ChunkTransfer):
    """Fetches a file's missing chunks from the CDN tier into its PartFile."""

    def __init__(self, client: GatewayClient, file_id: Any, obj: dict, part: PartFile, bar: tqdm,
                 options: DownloadOptions, result: DownloadResult):
        super().__init__(client, file_id, options, bar)
        self.obj = obj
        self.part = part
        self.result = result
        self.size = int(obj["file_size"])
        self.chunk_size = part.chunk_size
        self._refresh_lock = asyncio.Lock()

    # The signed URL --------------------------------------------------------------------

    @property
    def url(self) -> str:
        url = self.obj.get("download_url")
        if not url:
            raise ServerError(f"the gateway gave no download_url for file {self.file_id}; is its CDN tier configured?",
                              code="no_download_url")
        return urljoin(self.client.server + "/", url)  # absolute already, unless the gateway gives a path

    async def refresh_url(self, refused: str) -> None:
        """A fresh file object carries a fresh URL; workers refused at the same time ask for it once."""
        async with self._refresh_lock:
            if self.url == refused:
                self.obj.update(await self.client.get_file(self.file_id))

    # Parallel Range requests, one per chunk -----------------------------------------------

    async def fetch_chunks(self, indexes: list[int]) -> None:
        """``parallel`` workers take the next missing chunk until none is left; the first failure stops them all."""

        async def fetch(index: int) -> None:
            await self.with_retries(f"chunk {index}", self._fetch_chunk, index)

        await self.each(indexes, fetch)

    async def _fetch_chunk(self, url: str, index: int) -> None:
        start = index * self.chunk_size
        length = chunk_length(index, self.size, self.chunk_size)
        end = start + length - 1
        # Byte offsets are of the stored bytes: no content coding may change them.
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{end}"}
        async with self.client.session.get(url, headers=headers, allow_redirects=True) as resp:
            self._check_status(resp)
            if resp.status == 200 and length != self.size:
                raise RangeIgnored()
            if resp.status == 206 and not self._range_is(resp, start, end):
                raise Retry(f"a Range answer for other bytes than chunk {index} "
                            f"({resp.headers.get('Content-Range', 'no Content-Range')})")
            pieces = await self._read(resp, index, length)
            if await resp.content.read(1):
                raise IntegrityError(f"the CDN sent more than the {length} bytes of chunk {index} of file "
                                     f"{self.file_id}", code="too_long")
        await self._save(index, pieces)

    def _range_is(self, resp: aiohttp.ClientResponse, start: int, end: int) -> bool:
        match = CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        return match is not None and int(match.group(1)) == start and int(match.group(2)) == end

    # The fallback: one stream of the whole file -----------------------------------------

    async def fetch_stream(self) -> None:
        note(self.options, "the CDN tier ignores Range requests; downloading the file as one stream")
        self.result.range_requests = False
        await self.with_retries("the file", self._fetch_stream)

    async def _fetch_stream(self, url: str) -> None:
        """One GET of the whole file, cut into chunks as it arrives; the missing ones are kept."""
        async with self.client.session.get(url, headers={"Accept-Encoding": "identity"}, allow_redirects=True) as resp:
            self._check_status(resp)
            if resp.status != 200:
                raise Retry(f"HTTP {resp.status} to a request for the whole file")
            for index in range(len(self.part.chunk_fps)):
                wanted = index not in self.part.digests  # chunks already here still come by: read and drop them
                pieces = await self._read(resp, index, chunk_length(index, self.size, self.chunk_size), progress=wanted)
                if wanted:
                    await self._save(index, pieces)
            if await resp.content.read(1):
                raise IntegrityError(f"the CDN sent more than the {self.size} bytes of file {self.file_id}",
                                     code="too_long")

    # Shared by both -----------------------------------------------------------------------

    async def with_retries(self, what: str, attempt: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``attempt(url, *args)`` until it succeeds, retrying with backoff what may pass."""
        refreshed = False

        async def once() -> None:
            nonlocal refreshed
            url = self.url
            try:
                return await attempt(url, *args)
            except UrlRefused:
                if refreshed:
                    raise StoreRefused(f"the CDN refuses the download URL of file {self.file_id} even when fresh "
                                       "(HTTP 403); tell the gateway's operator", status=403) from None
                refreshed = True
                await self.refresh_url(url)
                raise Retry("HTTP 403 (the signed URL was refused or expired)") from None
            except TRANSPORT_ERRORS as exc:
                raise Retry(*transport_problem(exc, "the CDN tier")) from exc

        def give_up(last: Retry) -> ClientError:
            done, total = len(self.part.digests), len(self.part.chunk_fps)
            message = (f"downloading {what} of file {self.file_id} failed after {self.options.retries + 1} tries "
                       f"({last.problem}); {done} of {total} chunks are kept in {part_path(self.part.target)}: "
                       "run `dbx download` again to resume")
            return Unreachable(message) if last.unreachable else ServerError(message, code="download_failed")

        await with_retries(once, self.options, give_up)

    def _check_status(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status == 403:
            raise UrlRefused()
        if resp.status == 404:
            raise NotFound(f"the CDN has no content for file {self.file_id} (HTTP 404); it may have been deleted",
                           status=404)
        if resp.status not in (200, 206):
            raise Retry(f"HTTP {resp.status}")

    async def _read(self, resp: aiohttp.ClientResponse, index: int, length: int, progress: bool = True) -> list[bytes]:
        """The next ``length`` bytes of the body, which are chunk ``index``, in the pieces they came in."""
        pieces: list[bytes] = []
        filled = 0
        try:
            while filled < length:
                piece = await resp.content.read(min(PIECE, length - filled))
                if not piece:
                    raise Retry(f"the connection ended {filled} bytes into the {length} of chunk {index}")
                pieces.append(piece)
                filled += len(piece)
                if progress:
                    self.bar.update(len(piece))
        except BaseException:
            if progress:
                self.bar.update(-filled)  # this chunk's bytes will come again
            raise
        return pieces

    async def _save(self, index: int, pieces: list[bytes]) -> None:
        """Verify and write a chunk in a thread (see PartFile.store)."""
        length = sum(len(piece) for piece in pieces)
        task = asyncio.ensure_future(asyncio.to_thread(self.part.store, index, pieces))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # A cancelled worker still lets its thread finish: the part file must not be closed under it.
            await asyncio.gather(task, return_exceptions=True)
            raise
        except ChunkMismatch as exc:
            self.bar.update(-length)
            raise IntegrityError(
                f"chunk {index} of file {self.file_id} from the CDN tier does not match its fingerprint "
                f"({exc.digest[:12]}… instead of {self.part.chunk_fps[index][:12]}…); it was not kept and nothing "
                f"was written to {self.part.target}; run `dbx download` again (the verified chunks are kept), "
                "and tell the gateway's operator if it repeats",
                code="fingerprint_mismatch",
            ) from None
        self.result.chunks_fetched += 1
        self.result.bytes_received += length


# -- the command -------------------------------------------------------------------------


async def download_file(client: GatewayClient, file_id: Any, output: str | None, options: DownloadOptions) -> DownloadResult:
    started = time.monotonic()
    obj = await client.get_file(file_id)
    status = obj.get("status")
    if status != FileStatus.UPLOADED:
        if status == FileStatus.FAILED:
            raise IntegrityError(f"file {file_id} failed verification in the store and cannot be downloaded",
                                 code="upload_failed")
        raise Refused(f"file {file_id} is still {status or 'not ready'}; finish it with `dbx upload` or wait",
                      code="not_ready")
    size = int(obj["file_size"])
    fingerprint = obj["fingerprint"]
    chunk_size = int(obj.get("chunk_size") or 0) or DEFAULT_CHUNK_SIZE
    chunk_fps = checked_chunk_fingerprints(obj, file_id, size, chunk_size)
    target = resolve_target(output, obj.get("file_name") or "", file_id)
    if os.path.isdir(target):  # noqa: ASYNC240 - one local stat before the transfer starts, like refuse_existing's
        raise UsageError(f"{target} is a directory; pass -o with a file path")
    refuse_existing(target, options.force)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):  # noqa: ASYNC240 - as above
        raise NotFound(f"the directory {directory} does not exist; create it or pick another -o", code="local_not_found")
    clear_partial_names(target, options.force)

    meta = {"file_id": obj.get("file_id", file_id), "fingerprint": fingerprint, "file_size": size, "chunk_size": chunk_size}
    claimed = claimed_chunks(target, meta, len(chunk_fps))
    check_bar = make_bar(sum(chunk_length(i, size, chunk_size) for i in claimed), "checking the part file",
                         options, leave=False) if claimed else None
    try:
        part = await run_stoppable(PartFile.open, target, meta, chunk_fps, claimed,
                                   on_read=check_bar.update if check_bar else None)
    finally:
        if check_bar:
            check_bar.close()
    try:
        missing = part.missing()
        reused = len(chunk_fps) - len(missing)
        result = DownloadResult(meta["file_id"], obj.get("file_name", ""), target, size, fingerprint,
                                chunks_total=len(chunk_fps), chunks_reused=reused,
                                resumed_from=sum(chunk_length(i, size, chunk_size) for i in part.digests))
        if reused:
            note(options, f"resuming: {reused} of {len(chunk_fps)} chunks are already in {part_path(target)}")
        bar = make_bar(size, os.path.basename(target)[:24], options, initial=result.resumed_from)
        fetcher = ChunkFetcher(client, file_id, obj, part, bar, options, result)
        try:
            if missing:
                try:
                    await fetcher.fetch_chunks(missing)
                except RangeIgnored:
                    await fetcher.fetch_stream()
        finally:
            bar.close()
        got = part.fingerprint()
    finally:
        part.close()
    if got != fingerprint:  # every chunk matched its fingerprint, so this would be a bug here, not bad bytes
        remove_partial(target)
        raise IntegrityError(
            f"the bytes received for file {file_id} do not match its fingerprint ({got[:12]}… instead of "
            f"{fingerprint[:12]}…); nothing was written to {target}; run `dbx download` again",
            code="fingerprint_mismatch",
        )
    part.check_still_here()
    try:
        place(part_path(target), target, options.force)
    except LocalExists as exc:
        raise LocalExists(f"{exc.message}; the verified download is kept in {part_path(target)} for that rerun") from None
    remove_partial(target)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def error_json(file_id: Any, error: ClientError) -> dict:
    return {"ok": False, "file_id": file_id, "error": error.to_json()}
