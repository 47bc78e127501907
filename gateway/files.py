"""File metadata: reading rows, who may see them, and the contract's file object."""
from __future__ import annotations

import base64
import json
import re
from typing import Any

from aiohttp import web

from gateway import appkeys
from gateway.errors import bad_request

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
    """The file if ``user_id`` owns it; 404 otherwise, whether or not it exists.

    The permission comes from gateway/permissions.py (cached, invalidated on every change).
    """
    from gateway.permissions import owned

    row, _chunks = await owned(app, user_id, file_id)
    return row


async def readable_file(app: web.Application, user_id: int, file_id: str):
    """The file if ``user_id`` owns it or it is shared with them; 404 otherwise."""
    from gateway.permissions import readable

    row, _chunks = await readable(app, user_id, file_id)
    return row


async def readable_file_and_chunks(app: web.Application, user_id: int, file_id: str):
    """(row, chunks) of a file ``user_id`` may read; the chunks from the cache when they are final."""
    from gateway.permissions import readable

    row, chunks = await readable(app, user_id, file_id)
    if chunks is None:
        chunks = await get_chunks(app, file_id)
    return row, chunks


async def chunks_of(app: web.Application, file_ids: list[str]) -> dict[str, list]:
    """The chunks of many files in one query (a listing page), by file id, in index order."""
    by_file: dict[str, list] = {file_id: [] for file_id in file_ids}
    if not file_ids:
        return by_file
    rows = await app[appkeys.DB].fetchall(
        """SELECT file_id, idx, fingerprint, status FROM chunks
           WHERE file_id IN (SELECT value FROM json_each(?)) ORDER BY file_id, idx""",
        (json.dumps(file_ids),),
    )
    for row in rows:
        by_file[row["file_id"]].append(row)
    return by_file


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


# Listings: keyset pagination, never OFFSET, so page 1,000 costs what page 1 does.
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def encode_cursor(kind: str, position: str | int) -> str:
    """An opaque cursor: base64url of ``v1:<kind>:<position>``.

    ``kind`` ``own`` carries the ``files.seq`` of the last file of the page
    (own files come newest first, seq descending); ``shared`` carries the share
    time and file id of the last file (newest share first).
    """
    raw = f"v1:{kind}:{position}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, kind: str) -> str:
    """The position in a cursor of this ``kind``; 400 naming `cursor` for anything else."""
    invalid = bad_request(
        "`cursor` is not a cursor of this listing; pass `next_cursor` from the previous page unchanged",
        "invalid_cursor",
        field="cursor",
    )
    if not cursor or len(cursor) > 200:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid from exc
    version, _, rest = raw.partition(":")
    found_kind, _, position = rest.partition(":")
    if version != "v1" or found_kind != kind or not position:
        raise invalid
    return position


def page_limit(query) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not re.fullmatch(r"[0-9]{1,7}", raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise bad_request(f"`limit` must be an integer from 1 to {MAX_PAGE}", "invalid_limit", field="limit")
    return int(raw)
