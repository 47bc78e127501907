"""Reading files: one file, the caller's files and the files shared with them page by page, downloads."""
from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Config
from gateway.core.downloads import download_url
from gateway.core.errors import NotUploaded
from gateway.core.namespace import Namespace
from gateway.core.permissions import Permissions
from gateway.core.uploads import Uploads
from gateway.db import Database
from gateway.db import files as files_db
from gateway.db.files import ChunkRow, FileRow
from protocol.states import FileStatus


@dataclass(frozen=True)
class Page:
    """Files of one listing page, how many chunks of each the store holds, and whether more follow.

    No chunk arrays (contract v1.1): a page of 1,000 files of 5,120 chunks would
    be hundreds of megabytes; GET /dropbox/v1/files/{id} gives one file's chunks.
    """

    rows: list[FileRow]
    uploaded_chunks: dict[str, int]
    more: bool


class Files:
    def __init__(self, config: Config, db: Database, permissions: Permissions, uploads: Uploads, namespace: Namespace):
        self.config = config
        self.db = db
        self.permissions = permissions
        self.uploads = uploads
        self.namespace = namespace

    def download(self, row: FileRow) -> tuple[str, int] | None:
        """(signed CDN URL, expiry) for an uploaded file; None for any other status."""
        if row["status"] != FileStatus.UPLOADED:
            return None
        return download_url(self.config, row["fingerprint"], row["file_name"], row["file_type"])

    async def readable(self, user_id: int, file_id: str) -> tuple[FileRow, list[ChunkRow]]:
        """(row, chunks) of a file ``user_id`` may read, with its path as they may see it; FileNotFound otherwise."""
        row, chunks = await self.permissions.readable(user_id, file_id)
        return await self._as_seen(user_id, file_id, row, chunks)

    async def _as_seen(self, user_id: int, file_id: str, row: FileRow,
                       chunks: list[ChunkRow] | None) -> tuple[FileRow, list[ChunkRow]]:
        """The row with its path as ``user_id`` may see it, and the file's chunks (read now if not given)."""
        if chunks is None:
            chunks = await files_db.get_chunks(self.db, file_id)
        await self.namespace.with_paths([row], user_id)
        return row, chunks

    async def get(self, user_id: int, file_id: str) -> tuple[FileRow, list[ChunkRow]]:
        """A file as its reader should see it now: with a store that sends no per-part events
        (MinIO), an upload's progress is read from the store's part list first (then the file again);
        any other file is read once."""
        row, chunks = await self.permissions.readable(user_id, file_id)
        if not self.config.store_part_events and row["status"] == FileStatus.UPLOADING:
            await self.uploads.refresh_from_store(file_id)
            row, chunks = await self.permissions.readable(user_id, file_id)
        return await self._as_seen(user_id, file_id, row, chunks)

    async def content_url(self, user_id: int, file_id: str) -> str:
        """Where to download the file: NotUploaded until it is uploaded."""
        row, _ = await self.permissions.readable(user_id, file_id)
        download = self.download(row)
        if download is None:
            raise NotUploaded(row["status"])
        return download[0]

    async def _page(self, rows: list[FileRow], limit: int, viewer: int) -> Page:
        more = len(rows) > limit
        rows = await self.namespace.with_paths(rows[:limit], viewer)
        # An uploaded file holds every chunk; only the others are counted.
        counted = await files_db.uploaded_counts(self.db, [row["id"] for row in rows if row["status"] != FileStatus.UPLOADED])
        uploaded = {row["id"]: counted[row["id"]] if row["id"] in counted else row["total_chunks"] for row in rows}
        return Page(rows, uploaded, more)

    async def own(self, user_id: int, limit: int, *, before_seq: int | None = None,
                  fingerprint: str | None = None) -> Page:
        """The user's own files, newest first: keyset pagination on files.seq, every page costs the same."""
        rows = await files_db.own_files_page(self.db, user_id, limit + 1, before_seq=before_seq, fingerprint=fingerprint)
        return await self._page(rows, limit, user_id)

    async def shared_with_me(self, user_id: int, limit: int, *, before: tuple[str, str] | None = None) -> Page:
        """The files shared with the user, newest share first, paged by (share time, file id)."""
        rows = await files_db.shared_files_page(self.db, user_id, limit + 1, before=before)
        return await self._page(rows, limit, user_id)
