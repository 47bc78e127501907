"""File metadata: reading rows, who may see them, and the contract's file object."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import appkeys
from gateway.errors import not_found

FILE_COLUMNS = """
    f.id, f.seq, f.owner_id, u.username AS owner_name, f.file_name, f.file_size, f.file_type,
    f.fingerprint, f.chunk_size, f.total_chunks, f.status, f.failure_reason, f.upload_id,
    f.created_at, f.updated_at, f.completed_at
"""
FILE_SELECT = f"SELECT {FILE_COLUMNS} FROM files f JOIN users u ON u.id = f.owner_id"


async def get_file(app: web.Application, file_id: str):
    return await app[appkeys.DB].fetchone(f"{FILE_SELECT} WHERE f.id = ?", (file_id,))


async def get_chunks(app: web.Application, file_id: str):
    return await app[appkeys.DB].fetchall(
        "SELECT idx, fingerprint, size, status, etag FROM chunks WHERE file_id = ? ORDER BY idx", (file_id,)
    )


async def owned_file(app: web.Application, user_id: int, file_id: str):
    """The file if ``user_id`` owns it; 404 otherwise, whether or not it exists."""
    row = await get_file(app, file_id)
    if row is None or row["owner_id"] != user_id:
        raise not_found(f"no file {file_id!r} of yours")
    return row


async def readable_file(app: web.Application, user_id: int, file_id: str):
    """The file if ``user_id`` owns it or it is shared with them; 404 otherwise."""
    row = await get_file(app, file_id)
    if row is not None and row["owner_id"] != user_id:
        shared = await app[appkeys.DB].fetchval(
            "SELECT 1 FROM shares WHERE file_id = ? AND user_id = ?", (file_id, user_id)
        )
        if not shared:
            row = None
    if row is None:
        raise not_found(f"no file {file_id!r} that you can see")
    return row


def file_json(row, chunks, download: tuple[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "file_id": row["id"],
        "file_name": row["file_name"],
        "file_size": row["file_size"],
        "file_type": row["file_type"],
        "fingerprint": row["fingerprint"],
        "status": row["status"],
        "uploaded_by": row["owner_name"],
        "created_at": row["created_at"],
        "chunk_size": row["chunk_size"],
        "total_chunks": row["total_chunks"],
        "uploaded_chunks": sum(1 for c in chunks if c["status"] == "uploaded"),
        "chunks": [{"index": c["idx"], "fingerprint": c["fingerprint"], "status": c["status"]} for c in chunks],
    }
    if row["status"] == "failed":
        body["failure_reason"] = row["failure_reason"]
    if row["completed_at"]:
        body["completed_at"] = row["completed_at"]
    if download is not None:
        body["download_url"], body["download_url_expires_at"] = download
    return body
