"""The remote side of sync: the contract's calls (v1.2: The tree, Upload into the tree, Changes).

:class:`Remote` is what the executor and the journal reader need from a server,
and nothing more; :class:`HttpRemote` speaks it to a gateway over HTTP through
``client.api`` (uploads and downloads through the same chunked, verified
machinery as ``dbx upload`` and ``dbx download``); the tests' in-memory server
implements it too, with the contract's tree and journal semantics.

Following the journal: ``GET /changes`` without a cursor lists the whole tree
(parents first, in pages while ``has_more``), then the cursor of the last page
gives what changed after; a 410 ``cursor_reset`` means list again. The index
(index.py) applies each page with its cursor in one transaction, so a client
killed mid-read reads the same page again.

What the executor must know of failures: :class:`RemoteFailure` is one
operation that did not happen (or whose answer was lost): the next plan,
made from a fresh read of the journal, decides again. Anything else (not
logged in, a bug) ends the pass.
"""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from client.api import API, GatewayClient, _seg
from client.errors import AuthRequired, ClientError, IntegrityError, NotFound
from protocol.fingerprints import file_fingerprint, fingerprint_bytes
from protocol.paths import ROOT_PATH
from protocol.states import FileStatus

PAGE = 1000  # changes per page


class RemoteFailure(Exception):
    """One call that did not do what was asked (refused, not found, unreachable, or its answer lost)."""

    def __init__(self, message: str, *, code: str = "failed", gone: bool = False):
        super().__init__(message)
        self.code = code
        self.gone = gone  # the node acted on does not exist (any more)


class CursorReset(Exception):
    """410 cursor_reset: the journal no longer reaches back to the cursor; list the tree again."""


class SourceChanged(Exception):
    """The local file is not the content the upload was planned for (it changed since the scan)."""


@dataclass(frozen=True)
class ChangesPage:
    changes: list[dict]
    cursor: str | None
    has_more: bool


@dataclass(frozen=True)
class LocalSource:
    """A local file to upload, and the content it must still have: the scan's fingerprint, size and mtime.

    ``chunks``: its chunk fingerprints, when the scan that fingerprinted it ran in this process (None: read
    them from the file). ``key``: the inode the scan saw (scan.local_key).
    """

    path: str
    fingerprint: str
    size: int
    mtime_ns: int
    key: str = ""
    chunks: tuple[str, ...] | None = None

    def check_unchanged(self) -> None:
        """:class:`SourceChanged` unless the file is still what the scan saw: same inode, size and mtime (a stat)."""
        from client.sync.scan import local_key

        try:
            info = os.lstat(self.path)
        except OSError as exc:
            raise SourceChanged(f"{self.path}: {exc.strerror}") from None
        if (local_key(info), info.st_size, info.st_mtime_ns) != (self.key, self.size, self.mtime_ns):
            raise SourceChanged(f"{self.path} changed while it was being uploaded; it is uploaded again next pass")


class Remote(Protocol):
    async def changes(self, cursor: str | None) -> ChangesPage:
        """``GET /changes``; raises :class:`CursorReset` on 410."""

    async def wait(self, cursor: str, timeout: float) -> bool:  # noqa: ASYNC109 - the contract's own parameter
        """``GET /changes/wait``: True as soon as something changed after ``cursor``."""

    async def folder_at(self, path: str) -> str:
        """The id of the folder at ``path`` (made, with its parents, if missing)."""

    async def mkdir(self, parent_id: str, name: str) -> dict:
        """A new folder; :class:`RemoteFailure` (``name_taken``) if the name is taken."""

    async def move(self, node_id: str, folder: bool, parent_id: str, name: str) -> dict:
        """Rename and/or move; :class:`RemoteFailure` on ``name_taken``, ``cycle`` or not found."""

    async def delete(self, node_id: str, folder: bool) -> None:
        """To the trash; ``RemoteFailure(gone=True)`` when it is not there."""

    async def upload(self, source: LocalSource, parent_id: str, name: str, replaces: str | None) -> dict:
        """The file object of ``source``'s content at ``name``: ``update`` mode with ``replaces``, else ``add``.

        Raises :class:`SourceChanged` when the file's bytes are not ``source.fingerprint`` any more.
        """

    async def download(self, file_id: str, fingerprint: str, size: int, target: str) -> None:
        """Write the content of ``file_id`` (verified to be ``fingerprint``) to the new file ``target``."""


def _failure(exc: ClientError) -> RemoteFailure:
    return RemoteFailure(exc.message, code=exc.code, gone=isinstance(exc, NotFound))


class HttpRemote:
    """:class:`Remote` over the gateway's HTTP API (contract v1.2)."""

    def __init__(self, client: GatewayClient, config: dict, *, quiet: bool = True):
        self.client = client
        self.config = config
        self.quiet = quiet

    async def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        try:
            return (await self.client.request(method, path, ok=ok, **kwargs))[1]
        except AuthRequired:
            raise
        except ClientError as exc:
            raise _failure(exc) from exc

    async def changes(self, cursor: str | None) -> ChangesPage:
        params: dict[str, str | int] = {"limit": PAGE}
        if cursor is not None:
            params["cursor"] = cursor
        try:
            body = await self._call("GET", f"{API}/changes", params=params)
        except RemoteFailure as exc:
            if exc.code == "cursor_reset":
                raise CursorReset(str(exc)) from None
            raise
        return ChangesPage(list(body.get("changes") or []), body.get("cursor"), bool(body.get("has_more")))

    async def wait(self, cursor: str, timeout: float) -> bool:  # noqa: ASYNC109
        body = await self._call("GET", f"{API}/changes/wait", params={"cursor": cursor, "timeout": int(timeout)})
        return bool(body.get("changes"))

    async def folder_at(self, path: str) -> str:
        if path == ROOT_PATH:
            return "root"
        body = await self._call("POST", f"{API}/folders", json_body={"path": path}, ok=(200, 201))
        return str(body["folder_id"])

    async def mkdir(self, parent_id: str, name: str) -> dict:
        return await self._call("POST", f"{API}/folders", json_body={"parent_id": parent_id, "name": name},
                                ok=(200, 201))

    async def move(self, node_id: str, folder: bool, parent_id: str, name: str) -> dict:
        kind = "folders" if folder else "files"
        return await self._call("PATCH", f"{API}/{kind}/{_seg(node_id)}", json_body={"parent_id": parent_id, "name": name})

    async def delete(self, node_id: str, folder: bool) -> None:
        kind = "folders" if folder else "files"
        await self._call("DELETE", f"{API}/{kind}/{_seg(node_id)}", ok=(200, 204))

    async def upload(self, source: LocalSource, parent_id: str, name: str, replaces: str | None) -> dict:
        tree_fields: dict[str, str] = {"parent_id": parent_id, "mode": "update" if replaces else "add"}
        if replaces:
            tree_fields["replaces"] = replaces
        if source.size <= int(self.config.get("inline_upload_limit") or 0):
            return await self._upload_inline(source, name, tree_fields)
        return await self._upload_chunked(source, name, tree_fields)

    async def _upload_inline(self, source: LocalSource, name: str, tree_fields: dict[str, str]) -> dict:
        """A small file in one request (multipart): 1 round trip instead of 4 or 5.

        The gateway fingerprints the bytes it is sent, so they are read once and checked here against
        the scan's fingerprint first: what the server holds is then exactly the content planned.
        """
        try:
            data = await asyncio.to_thread(_read_small, source.path, source.size)
        except OSError as exc:
            raise SourceChanged(f"cannot read {source.path}: {exc.strerror}") from None
        if data is None or fingerprint_bytes(data, int(self.config["chunk_size"]))[0] != source.fingerprint:
            raise SourceChanged(f"{source.path} changed since it was scanned")
        form = aiohttp.FormData()
        form.add_field("file_metadata", json.dumps({"file_name": name, **tree_fields}), content_type="application/json")
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
        return await self._call("POST", f"{API}/files", data=form, ok=(200, 201))

    async def _upload_chunked(self, source: LocalSource, name: str, tree_fields: dict[str, str]) -> dict:
        """A large file by the chunked path, each chunk straight to the store.

        The file is read once to fingerprint it: the scan's chunk fingerprints are sent when the scan ran
        in this process, else (a client started again) they are read here, once. The store checks each
        chunk against the fingerprint signed in its URL, so bytes that changed since are refused and the
        server never holds half of one version and half of another; and the file is stat'ed after the
        chunks are sent, before the file is committed: one that changed meanwhile (grown, saved again)
        is not committed as the stale version it was, but uploaded again next pass (unless the gateway
        committed it on its own meanwhile: see below).
        """
        from client.upload import LocalFile, Upload, UploadOptions, claim

        options = UploadOptions(quiet=self.quiet)
        chunk_size = int(self.config["chunk_size"])
        chunk_fps = await self._chunk_fingerprints(source, name, chunk_size, options)
        metadata = {**claim(name, source.size, source.fingerprint, chunk_size, chunk_fps, None), **tree_fields}
        fd = os.open(source.path, os.O_RDONLY | os.O_NOFOLLOW)
        upload = Upload(self.client, LocalFile(source.path, fd, source.size, chunk_size, chunk_fps), metadata,
                        options, before_complete=source.check_unchanged)
        try:
            try:
                await upload.run()
            except IntegrityError as exc:
                raise SourceChanged(str(exc)) from None
            except AuthRequired:
                raise
            except ClientError as exc:
                raise _failure(exc) from exc
            finally:
                os.close(fd)
        except SourceChanged:
            if upload.result.file_id is None:
                raise
            # A gateway that follows the store's events finishes a file itself once the store holds every
            # chunk, without waiting for `complete`: committed, then, with the scan's content (the store
            # checked each chunk against it). Taken as done; the next pass uploads the change.
            obj = await self._call("GET", f"{API}/files/{_seg(upload.result.file_id)}")
            if obj.get("status") == FileStatus.UPLOADED:
                return obj
            await self._abandon(upload.result.file_id)
            raise
        return await self._call("GET", f"{API}/files/{_seg(upload.result.file_id)}")

    async def _abandon(self, file_id: str) -> None:
        """Delete an upload that will not be finished (its content changed), so that it counts toward neither
        the quota nor the uploads in progress until the gateway abandons it (a day). Should the gateway finish
        it in between, the delete sends that file to the trash: the next pass reads that as a deletion on
        the server and uploads the local file again, nothing lost. Best effort: a failure is only a leftover."""
        try:
            await self._call("DELETE", f"{API}/files/{_seg(file_id)}", ok=(200, 204))
        except RemoteFailure:
            pass

    @staticmethod
    async def _chunk_fingerprints(source: LocalSource, name: str, chunk_size: int, options: Any) -> list[str]:
        """The scan's chunk fingerprints of ``source``, or (none kept) the file's, read now on several threads."""
        from client.hashing import FingerprintPass
        from client.upload import fingerprint

        if source.chunks is not None and file_fingerprint(source.chunks) == source.fingerprint:
            return list(source.chunks)
        try:
            file_fp, chunk_fps = await fingerprint(FingerprintPass(source.path, chunk_size), name, source.size, options)
        except (IntegrityError, NotFound) as exc:
            raise SourceChanged(str(exc)) from None
        if file_fp != source.fingerprint:
            raise SourceChanged(f"{source.path} changed since it was scanned")
        return chunk_fps

    async def download(self, file_id: str, fingerprint: str, size: int, target: str) -> None:
        from client.download import DownloadOptions, download_file

        try:
            result = await download_file(self.client, file_id, target, DownloadOptions(quiet=self.quiet, force=True))
        except AuthRequired:
            raise
        except ClientError as exc:
            raise _failure(exc) from exc
        if result.fingerprint != fingerprint:
            os.unlink(target)
            raise RemoteFailure(f"file {file_id} is not the content planned", code="changed")


def _read_small(path: str, size: int) -> bytes | None:
    """The whole of a small file, never through a link; None if it is not ``size`` bytes any more."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        data = f.read(size + 1)
    return data if len(data) == size else None
