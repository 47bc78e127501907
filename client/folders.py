"""Whole folders: ``dbx upload -r``, ``dbx download -r`` and ``dbx cp -r``.

What makes many small files fast is the number of round trips, not the bytes:

- The local folder is read once (names, sizes) and its folders are made on
  the gateway once each, parents before children and each level's at once,
  before any file: a file then names its folder by id (``parent_id``), and no
  file's upload asks for a folder again.
- ``jobs`` requests are in flight at a time. Small files (up to
  ``inline_limit``, and never more than the gateway's ``inline_upload_limit``
  or one chunk) go up to BATCH_FILES at a time in one ``multipart/form-data``
  request (``POST /dropbox/v1/files/batch``, beyond the contract), which the
  gateway stores into the store and records together, answering for each
  file: a request, a read and a write transaction on the gateway a batch,
  not a file. A gateway without that call gets each in a request of its own
  (the contract's inline upload). A larger file takes the chunked path of
  client/upload.py (fingerprinted on threads, chunks straight to the store).
- A folder that was there already is listed once (a page is up to 1,000
  entries); a local file whose name there holds a file of the same size is
  fingerprinted (on threads, off the event loop) and, when the fingerprints
  agree, not sent at all: running the same ``upload -r`` again moves no bytes
  and makes no request per file.

Names are checked with the contract's rules (protocol/paths.py) before the
gateway is asked. Two local names that are one name to the contract
(``Report.pdf`` and ``report.PDF`` on a case-sensitive disk) cannot share a
folder: the second takes the first free name (``report (1).PDF``) and a note
says so, so neither replaces the other even with ``--overwrite``.
"""
from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from client.api import GatewayClient, entry_id, entry_kind
from client.errors import ClientError, IntegrityError, Refused, Throttled, UsageError
from client.output import printable
from client.transfer import backoff_delay, run_workers
from client.upload import UploadOptions, upload_file
from protocol.batches import BATCH_MAX_BYTES, BATCH_MAX_FILES
from protocol.fingerprints import fingerprint_stream
from protocol.paths import InvalidName, check_name, free_names, join_path, name_key

INLINE_LIMIT = 1024 * 1024  # files up to this size go in one request through the gateway; larger ones straight to the store
THROTTLE_RETRIES = 8  # 429 too_many_uploads: wait as the gateway says, this many times at most
# Small files a batch request carries at most, and their bytes together (within protocol/batches.py's bounds).
BATCH_FILES = min(32, BATCH_MAX_FILES)
BATCH_BYTES = min(1024 * 1024, BATCH_MAX_BYTES)


@dataclass
class LocalFile:
    """A file of the local folder: where it is, which folder it goes into (relative), and its name there."""

    path: str
    folder: str  # the relative path of its folder ('' for the top)
    name: str  # its name on the server (the local one, or the first free one after a clash)
    size: int


@dataclass
class LocalTree:
    """A local folder as read once: its folders (parents first) with their names on the server, and its files."""

    root: str
    folders: list[str] = field(default_factory=list)  # relative paths on the server, '' first
    files: list[LocalFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (local path, why): not files the server takes
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (local path, why): names the server refuses
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (local path, name on the server)


def read_tree(root: str) -> LocalTree:
    """The folders and regular files under ``root`` (links to files are followed, links to folders are not)."""
    tree = LocalTree(root)
    remote_of = {root: ""}  # local directory -> its relative path on the server
    for directory, subdirs, files in os.walk(root):
        here = remote_of.pop(directory)
        tree.folders.append(here)
        taken: set[str] = set()
        kept = []
        for name in sorted(subdirs):
            local = os.path.join(directory, name)
            if os.path.islink(local):
                tree.skipped.append((local, "a link to a folder (not followed)"))
                continue
            remote = place_name(tree, local, name, taken, folder=True)
            if remote is not None:
                kept.append(name)
                remote_of[local] = f"{here}/{remote}" if here else remote
        subdirs[:] = kept
        for name in sorted(files):
            local = os.path.join(directory, name)
            try:
                info = os.stat(local)
            except OSError as exc:
                tree.skipped.append((local, exc.strerror or "cannot be read"))
                continue
            if not stat.S_ISREG(info.st_mode):
                tree.skipped.append((local, "not a regular file"))
                continue
            remote = place_name(tree, local, name, taken, folder=False)
            if remote is not None:
                tree.files.append(LocalFile(local, here, remote, info.st_size))
    tree.folders.sort(key=lambda folder: (folder.count("/") + bool(folder), folder))
    return tree


def place_name(tree: LocalTree, local: str, name: str, taken: set[str], folder: bool) -> str | None:
    """The name ``local`` gets on the server: its own, or the first free one after a clash; None if invalid."""
    try:
        check_name(name)
    except InvalidName as exc:
        tree.invalid.append((local, str(exc)))
        return None
    remote = next(n for n in free_names(name, folder=folder) if name_key(n) not in taken)
    taken.add(name_key(remote))
    if remote != name:
        tree.renamed.append((local, remote))
    return remote


@dataclass
class TreeOptions:
    jobs: int = 8  # files in flight
    parallel: int = 4  # chunks in flight per chunked file
    retries: int = 6
    overwrite: bool = False  # replace a changed file of the same name (it becomes a version) instead of a free name
    inline_limit: int = INLINE_LIMIT
    quiet: bool = False


@dataclass
class Summary:
    """What a whole folder's upload or download did: files moved (``done``) or not, bytes, time, exit code."""

    files: int = 0
    done: int = 0  # uploaded, or downloaded
    unchanged: int = 0  # not sent: the server's file of that name has the same content
    failed: int = 0
    skipped: int = 0  # left out: not a regular file, a link to a folder
    bytes: int = 0
    folders_made: int = 0
    seconds: float = 0.0
    exit_code: int = 0

    def to_json(self) -> dict:
        rate = round(self.done / self.seconds, 1) if self.seconds else None
        return {"ok": self.exit_code == 0, "summary": {**self.__dict__, "files_per_second": rate}}


Report = Callable[[dict], None]  # one line per file: {"ok": True, ...} or {"ok": False, "path", "error"}


class TreeUpload:
    """One local folder into a folder of the tree; ``report`` hears of every file as it is done."""

    def __init__(self, client: GatewayClient, config: dict, options: TreeOptions, report: Report):
        self.client = client
        self.config = config
        self.options = options
        self.report = report
        self.chunk_size = int(config["chunk_size"])
        self.inline_limit = min(options.inline_limit, int(config.get("inline_upload_limit") or 0))
        self.mode = "overwrite" if options.overwrite else "add"
        self.summary = Summary()
        self.folder_ids: dict[str, str] = {}  # relative path -> folder id
        self.existing: dict[str, dict[str, dict]] = {}  # relative path of a folder that was there -> key -> entry
        self.folder_errors: dict[str, ClientError] = {}
        self.batches = True  # False once the gateway says it has no batch call: each small file alone then

    async def run(self, local_root: str, remote_base: str) -> Summary:
        started = time.monotonic()
        tree = await asyncio.to_thread(read_tree, local_root)
        for path, why in tree.invalid:
            self.failed(path, Refused(printable(f"{path} is left out: its name cannot be used on the server ({why})"),
                                      code="invalid_name"))
        for path, why in tree.skipped:
            self.summary.skipped += 1
            self.note(f"{path} is left out: {why}")
        for path, name in tree.renamed:
            self.note(f"{path}: another name in its folder is the same name to the server; it goes up as {name}")
        await self.make_folders(tree.folders, remote_base)
        self.summary.files = len(tree.files)
        bar = tqdm(total=len(tree.files), unit="file", desc=printable(f"uploading into {remote_base}"),
                   disable=self.options.quiet, dynamic_ncols=True, leave=False)
        try:
            async def one(work: LocalFile | list[LocalFile]) -> None:
                if isinstance(work, list):
                    await self.upload_batch(work)
                else:
                    await self.upload(work)
                bar.update(len(work) if isinstance(work, list) else 1)

            await run_workers(self.options.jobs, self.in_batches(tree.files), one)
        finally:
            bar.close()
        self.summary.seconds = round(time.monotonic() - started, 3)
        return self.summary

    # -- folders ---------------------------------------------------------------------------

    async def make_folders(self, folders: list[str], remote_base: str) -> None:
        """Every folder once, a level at a time (parents first), each level's folders at once."""
        levels: dict[int, list[str]] = {}
        for folder in folders:
            levels.setdefault(folder.count("/") + bool(folder), []).append(folder)
        for depth in sorted(levels):
            await run_workers(self.options.jobs, levels[depth], lambda folder: self.make_folder(folder, remote_base))

    async def make_folder(self, folder: str, remote_base: str) -> None:
        parent = folder.rpartition("/")[0] if "/" in folder else ("" if folder else None)
        if parent is not None and parent in self.folder_errors:
            self.folder_errors[folder] = self.folder_errors[parent]
            return
        path = join_path(remote_base, folder) if folder else remote_base
        try:
            status, made = await self.client.create_folder(path=path)
        except ClientError as exc:
            if not exc.per_file:
                raise
            self.folder_errors[folder] = type(exc)(printable(f"the folder {path} cannot be made: {exc.message}"),
                                                   code=exc.code, status=exc.status)
            return
        self.folder_ids[folder] = entry_id(made)
        if status == 201:
            self.summary.folders_made += 1
        else:  # there already: what it holds decides which files need to go up
            self.existing[folder] = {name_key(str(e.get("name") or e.get("file_name"))): e
                                     async for page in self.client.folder_entries(entry_id(made)) for e in page}

    # -- files -----------------------------------------------------------------------------

    def in_batches(self, files: list[LocalFile]) -> list[LocalFile | list[LocalFile]]:
        """The work, in order: batches of small new files (at most BATCH_FILES and BATCH_BYTES each), and the
        files that go alone (larger ones, and those whose name in a folder that was there already needs a
        look at the file there first)."""
        work: list[LocalFile | list[LocalFile]] = []
        batch: list[LocalFile] = []
        size = 0
        for local in files:
            alone = (local.size > min(self.inline_limit, self.chunk_size) or local.folder in self.folder_errors
                     or name_key(local.name) in self.existing.get(local.folder, {}))
            if alone:
                work.append(local)
                continue
            if batch and (len(batch) == BATCH_FILES or size + local.size > BATCH_BYTES):
                work.append(batch)
                batch, size = [], 0
            batch.append(local)
            size += local.size
        if batch:
            work.append(batch)
        return work

    async def upload_batch(self, batch: list[LocalFile]) -> None:
        """Small files in one request; each file's answer reported as :meth:`upload` reports one. A file that
        cannot be read, or is throttled, and every file when the gateway has no batch call, goes alone."""
        contents = await asyncio.to_thread(read_batch, [local.path for local in batch], self.inline_limit) \
            if self.batches else [None] * len(batch)
        sent = [(local, content) for local, content in zip(batch, contents, strict=True) if content is not None]
        answers: list[dict | ClientError] = []
        if sent:
            try:
                answers = await self.client.upload_batch([(self.metadata(local), content) for local, content in sent])
            except ClientError as exc:
                if exc.code != "unsupported":
                    raise
                self.batches = False
                sent = []
        answered = {id(local): answer for (local, _), answer in zip(sent, answers, strict=True)}
        for local in batch:
            answer = answered.get(id(local))
            if answer is None or isinstance(answer, Throttled):
                await self.upload(local)
            elif isinstance(answer, ClientError):
                if not answer.per_file:
                    raise answer
                self.failed(local.path, answer)
            else:
                self.uploaded(local, answer, "inline")

    async def upload(self, local: LocalFile) -> None:
        if local.folder in self.folder_errors:
            self.failed(local.path, self.folder_errors[local.folder])
            return
        try:
            there = self.existing.get(local.folder, {}).get(name_key(local.name))
            if there is not None and await self.same_content(local, there):
                self.summary.unchanged += 1
                self.report({"ok": True, "path": local.path, "remote_path": there.get("path"),
                             "file_id": there.get("file_id"), "file_size": local.size, "how": "unchanged"})
                return
            obj, how = await self.throttled(lambda: self.send(local))
        except ClientError as exc:
            if not exc.per_file:
                raise
            self.failed(local.path, exc)
            return
        self.uploaded(local, obj, how)

    def uploaded(self, local: LocalFile, obj: dict, how: str) -> None:
        self.summary.done += 1
        self.summary.bytes += local.size if how != "deduplicated" else 0
        self.report({"ok": True, "path": local.path, "remote_path": obj.get("path"), "file_id": obj.get("file_id"),
                     "file_size": local.size, "status": obj.get("status"), "how": how})

    async def same_content(self, local: LocalFile, there: dict) -> bool:
        """Whether the server's file of this name holds this file's bytes (sizes first, then fingerprints)."""
        if entry_kind(there) != "file" or there.get("file_size") != local.size:
            return False
        chunk_size = int(there.get("chunk_size") or self.chunk_size)
        try:
            fingerprint = await asyncio.to_thread(local_fingerprint, local.path, chunk_size)
        except OSError:
            return False  # the upload says what is wrong with it
        return fingerprint == there.get("fingerprint")

    async def send(self, local: LocalFile) -> tuple[dict, str]:
        """(the file object, how it went up): one inline request, or the chunked path for a larger file."""
        parent_id = self.folder_ids[local.folder]
        if local.size <= self.inline_limit:
            content = await asyncio.to_thread(read_small, local.path, self.inline_limit)
            return await self.client.upload_inline(self.metadata(local), content), "inline"
        options = UploadOptions(parallel=self.options.parallel, retries=self.options.retries, quiet=True,
                                name=local.name, place={"parent_id": parent_id, "mode": self.mode})
        result = await upload_file(self.client, local.path, options, self.config)
        return {"file_id": result.file_id, "path": result.remote_path, "status": result.status}, (
            "deduplicated" if result.deduplicated or result.already_uploaded else "chunked")

    def metadata(self, local: LocalFile) -> dict:
        """A small file's ``file_metadata``: its name, its folder (by id), the mode, its type if its name tells it."""
        metadata = {"file_name": local.name, "parent_id": self.folder_ids[local.folder], "mode": self.mode}
        file_type = mimetypes.guess_type(local.name)[0]
        if file_type:
            metadata["file_type"] = file_type
        return metadata

    async def throttled(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """``attempt()``, again after the wait the gateway asks for while it answers 429 (uploads in progress)."""
        for number in range(THROTTLE_RETRIES + 1):
            try:
                return await attempt()
            except Throttled as exc:
                if number == THROTTLE_RETRIES or exc.code != "too_many_uploads":
                    raise
                wait = exc.details.get("retry_after")
                await asyncio.sleep(min(30.0, wait) if isinstance(wait, (int, float)) else backoff_delay(number))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def failed(self, path: str, exc: ClientError) -> None:
        self.summary.failed += 1
        self.summary.exit_code = self.summary.exit_code or exc.exit_code
        self.note(f"error: {exc.message}" if path in exc.message else f"error: {path}: {exc.message}")
        self.report({"ok": False, "path": path, "error": exc.to_json()})

    def note(self, message: str) -> None:
        if not self.options.quiet:
            tqdm.write(f"dbx: {printable(message)}")


def local_fingerprint(path: str, chunk_size: int) -> str:
    with open(path, "rb") as handle:
        return fingerprint_stream(handle, chunk_size)[0]


def read_batch(paths: list[str], limit: int) -> list[bytes | None]:
    """The bytes of small files (read_small); None for one that cannot be read so (it goes alone, and its
    upload says what is wrong with it)."""
    contents: list[bytes | None] = []
    for path in paths:
        try:
            contents.append(read_small(path, limit))
        except (OSError, ClientError):
            contents.append(None)
    return contents


def read_small(path: str, limit: int) -> bytes:
    """A small file's bytes; a file that grew past ``limit`` since it was listed is refused, not cut."""
    with open(path, "rb") as handle:
        content = handle.read(limit + 1)
    if len(content) > limit:
        raise IntegrityError(printable(f"{path} grew while it was being uploaded; run `dbx upload -r` again"),
                             code="file_changed")
    return content


# -- the remote side: walking a folder, downloading it, copying it ---------------------------


async def walk_remote(client: GatewayClient, folder: dict, jobs: int) -> list[tuple[str, dict]]:
    """Everything under ``folder``: (relative path, entry), parents before what they hold; folders listed at once."""
    found: list[tuple[str, dict]] = []
    level: list[tuple[str, dict]] = [("", folder)]
    while level:
        below: list[tuple[str, dict]] = []

        async def list_one(item: tuple[str, dict], below: list[tuple[str, dict]] = below) -> None:
            relative, entry = item
            async for page in client.folder_entries(entry_id(entry)):
                for child in page:
                    name = str(child.get("name") or child.get("file_name"))
                    below.append((f"{relative}/{name}" if relative else name, child))

        await run_workers(jobs, level, list_one)
        below.sort(key=lambda item: item[0])
        found.extend(below)
        level = [item for item in below if entry_kind(item[1]) == "folder"]
    return found


async def download_tree(client: GatewayClient, folder: dict, target: str, options: Any, jobs: int,
                        report: Report) -> Summary:
    """The folder's files into the local directory ``target`` (made, with its subfolders), ``jobs`` at a time.

    Remote names are checked with the contract's rules before they become
    local ones: a name that holds ``/`` or is ``..`` never leaves ``target``.
    Existing local files are kept unless ``options.force`` (as ``dbx download``).
    """
    from client.download import DownloadOptions, download_file

    started = time.monotonic()
    summary = Summary()
    entries = await walk_remote(client, folder, jobs)
    os.makedirs(target, exist_ok=True)
    files = []
    for relative, entry in entries:
        try:
            for name in relative.split("/"):
                check_name(name)
        except InvalidName:
            summary.skipped += 1
            report({"ok": False, "path": relative, "error": UsageError(f"{relative!r} cannot be a local name").to_json()})
            continue
        local = os.path.join(target, *relative.split("/"))
        if entry_kind(entry) == "folder":
            os.makedirs(local, exist_ok=True)
        else:
            files.append((local, entry))
    summary.files = len(files)
    per_file = DownloadOptions(parallel=options.parallel, retries=options.retries, quiet=True, force=options.force)

    async def one(item: tuple[str, dict]) -> None:
        local, entry = item
        try:
            result = await download_file(client, entry_id(entry), local, per_file)
        except ClientError as exc:
            if not exc.per_file:
                raise
            summary.failed += 1
            summary.exit_code = summary.exit_code or exc.exit_code
            report({"ok": False, "path": local, "file_id": entry_id(entry), "error": exc.to_json()})
            return
        summary.done += 1
        summary.bytes += result.file_size
        report(result.to_json())

    await run_workers(jobs, files, one)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


async def copy_folder(client: GatewayClient, source: dict, into: dict, name: str, autorename: bool,
                      jobs: int = 8) -> dict:
    """A new folder ``name`` in ``into`` holding copies of all ``source`` holds (no bytes move); the new folder."""
    source_path, into_path = str(source.get("path") or ""), str(into.get("path") or "")
    if source_path and (into_path == source_path or into_path.startswith(source_path.rstrip("/") + "/")):
        raise UsageError(printable(f"{source_path} cannot be copied into itself ({into_path})"))
    entries = await walk_remote(client, source, jobs)
    _, top = await client.create_folder(parent_id=entry_id(into), name=name, autorename=autorename)
    made = {"": entry_id(top)}
    for relative, entry in entries:  # parents first: each folder's parent is made before it
        if entry_kind(entry) == "folder":
            parent, _, own = relative.rpartition("/")
            made[relative] = entry_id((await client.create_folder(parent_id=made[parent], name=own))[1])

    async def copy_one(item: tuple[str, dict]) -> None:
        relative, entry = item
        parent, _, own = relative.rpartition("/")
        await client.copy(entry_id(entry), parent_id=made[parent], name=own)

    await run_workers(jobs, [item for item in entries if entry_kind(item[1]) == "file"], copy_one)
    return top


def local_target(folder: dict, output: str | None) -> str:
    """Where ``dbx download -r`` puts a folder: ``-o DIR``, else a directory of its name here."""
    if output:
        return os.path.abspath(output)
    name = str(folder.get("name") or "")
    if not name:
        raise UsageError("the root folder has no name to give a local directory; pass -o DIR")
    try:
        return os.path.abspath(check_name(name))
    except InvalidName as exc:
        raise UsageError(printable(f"the folder's name cannot be a local directory's ({exc}); pass -o DIR")) from None
