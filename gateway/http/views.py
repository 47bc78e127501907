"""The contract's file object and listing pages, built from what the core returns."""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

from aiohttp import web

from gateway.core import Core
from gateway.core.thumbnails import is_pdf_file, wants_thumbnail
from gateway.core.files import Page
from gateway.core.tree import Entry
from gateway.core.uploads import Started
from gateway.db.files import ChunkRow, FileRow
from gateway.db.nodes import NodeRow
from gateway.http.parsing import own_cursor_after, shared_cursor_after
from protocol.states import ChunkStatus, FileStatus


def listed_file_json(row: FileRow, uploaded_chunks: int, download: tuple[str, int] | None = None) -> dict[str, Any]:
    """The file object as listings give it: without ``chunks`` (contract v1.1), the counts stay."""
    body: dict[str, Any] = {
        "type": "file",
        "file_id": row["id"],
        "name": row["file_name"],
        "path": row.get("path"),
        "parent_id": row["parent_id"],
        "modified_at": row["modified_at"],
        "file_name": row["file_name"],
        "file_size": row["file_size"],
        "file_type": row["file_type"],
        "fingerprint": row["fingerprint"],
        "status": row["status"],
        "uploaded_by": row["owner_name"],
        "created_at": row["created_at"],
        "chunk_size": row["chunk_size"],
        "total_chunks": row["total_chunks"],
        "uploaded_chunks": uploaded_chunks,
    }
    if row["status"] == FileStatus.FAILED:
        body["failure_reason"] = row["failure_reason"]
    if row["completed_at"]:
        body["completed_at"] = row["completed_at"]
    if row["replaced_by"] is not None:
        body["replaced_by"] = row["replaced_by"]
    if row["deleted_at"] is not None:
        body["deleted_at"] = row["deleted_at"]
    if download is not None:
        body["download_url"], body["download_url_expires_at"] = download
    return body


def file_json(row: FileRow, chunks: list[ChunkRow], download: tuple[str, int] | None = None) -> dict[str, Any]:
    """The whole file object, chunks included (GET /dropbox/v1/files/{id}, uploads)."""
    body = listed_file_json(row, sum(1 for c in chunks if c["status"] == ChunkStatus.UPLOADED), download)
    body["chunks"] = [{"index": c["idx"], "fingerprint": c["fingerprint"], "status": c["status"]} for c in chunks]
    return body


async def file_response(core: Core, user_id: int, file_id: str, status: int = 200) -> web.Response:
    """The file object of a file ``user_id`` may read."""
    row, chunks = await core.files.readable(user_id, file_id)
    return await file_object_response(core, row, chunks, status)


async def file_object_response(core: Core, row: FileRow, chunks: list[ChunkRow], status: int = 200) -> web.Response:
    """The file object of ``row`` (its path filled in) and ``chunks``."""
    return web.json_response(await with_thumbnails(core, file_json(row, chunks, core.files.download(row))),
                             status=status)


async def started_response(core: Core, user_id: int, started: Started, status: int) -> web.Response:
    """The answer to an upload: the file as the upload wrote it, or as a read finds it (an existing file)."""
    return web.json_response(await with_thumbnails(core, await started_json(core, user_id, started)), status=status)


async def started_json(core: Core, user_id: int, started: Started) -> dict[str, Any]:
    """The file object of an upload's file, thumbnails aside: as the upload wrote it, or as a read finds it."""
    if started.row is not None and started.chunks is not None:
        row, chunks = started.row, started.chunks
    else:
        row, chunks = await core.files.readable(user_id, started.file_id)
    return file_json(row, chunks, core.files.download(row))


async def with_thumbnails(core: Core, *bodies: dict[str, Any]) -> dict[str, Any]:
    """``thumbnail_url`` and ``thumbnail_url_expires_at`` added to the file objects (of files the reader may
    read, as every object given here is) whose content has a thumbnail (gateway/core/thumbnails.py), one
    query for them all; an image or PDF whose thumbnail is not made yet has none. A PDF's gets ``page_url``
    and ``page_url_expires_at`` with it: its first page, for the preview. The first body back."""
    candidates = [body for body in bodies if body.get("type") == "file" and body["status"] == FileStatus.UPLOADED
                  and wants_thumbnail(body["file_type"], body["file_name"])]
    if candidates:
        urls = await core.thumbnails.urls(body["fingerprint"] for body in candidates)
        for body in candidates:
            if body["fingerprint"] in urls:
                body["thumbnail_url"], body["thumbnail_url_expires_at"] = urls[body["fingerprint"]]
                if is_pdf_file(body["file_type"], body["file_name"]):
                    body["page_url"], body["page_url_expires_at"] = core.thumbnails.page_url(body["fingerprint"])
    return bodies[0] if bodies else {}


async def entries_json(core: Core, entries: list[Entry]) -> list[dict[str, Any]]:
    """Folder and file objects (folder listings, search), the files' thumbnails included."""
    bodies = [entry_json(core, entry) for entry in entries]
    await with_thumbnails(core, *bodies)
    return bodies


def folder_json(node: NodeRow, path: str) -> dict[str, Any]:
    """The folder object (contract v1.2); the root is ``root`` with path ``/`` and no parent."""
    body: dict[str, Any] = {
        "type": "folder",
        "folder_id": node["id"],
        "name": node["name"],
        "path": path,
        "parent_id": node["parent_id"] or None,
        "created_at": node["created_at"],
        "modified_at": node["modified_at"],
    }
    if node["deleted_at"] is not None:
        body["deleted_at"] = node["deleted_at"]
    return body


def entry_json(core: Core, entry: Entry) -> dict[str, Any]:
    """A folder or a file object, as folder listings, search, metadata and the trash give them."""
    if entry.file is None:
        return folder_json(entry.node, entry.path)
    return listed_file_json(entry.file, entry.file["total_chunks"], core.files.download(entry.file))


async def page_response(core: Core, page: Page, cursor_of: Callable[[FileRow], str]) -> web.Response:
    """``{files, next_cursor}``; ``next_cursor`` null on the last page."""
    files = [listed_file_json(row, page.uploaded_chunks[row["id"]], core.files.download(row)) for row in page.rows]
    await with_thumbnails(core, *files)
    next_cursor = cursor_of(page.rows[-1]) if page.more else None
    return web.json_response({"files": files, "next_cursor": next_cursor})


def own_cursor_of(row: FileRow) -> str:
    return own_cursor_after(row["seq"])


def shared_cursor_of(row: FileRow) -> str:
    return shared_cursor_after(row["shared_at"], row["id"])
