"""Upload sessions: start, learn from the store, complete, fail, abandon.

An upload in progress is a file row (``uploading``) and its session
(gateway/db/uploads.py: the store's multipart upload, where the file is headed,
the lease). Completing ends the session in the transaction that makes the file
``uploaded``; failing or abandoning ends it as ``failed``.

The gateway never takes a client's word that bytes arrived, nor an event's.
What the store lists (its parts, its objects and their checksums) is the only
evidence; its events only say when to look (gateway/core/events.py). A chunk
turns ``uploaded`` when ListParts shows its part, and a file turns
``uploaded`` only after the store has checked every chunk against its SHA-256
(CompleteMultipartUpload's composite checksum).

Settling an upload (resume, complete, abandon) holds the file's lease
(gateway/core/leases.py), so one gateway at a time does it, whichever gateway
the request or event reached.
"""
from __future__ import annotations

import asyncio
import dataclasses
import io
import secrets
from dataclasses import dataclass
from typing import BinaryIO

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config import Config
from gateway.core.clock import Clock, stamp_ago, stamp_now
from gateway.core.content import content_key
from gateway.core.deletion import Deletion
from gateway.core.fairshare import FairShare
from gateway.core.errors import DomainError, InvalidName, ChunkIndexOutOfRange, ChunksMissing, NotUploading, StoreDidNotAccept, UploadGone, VerificationFailed
from gateway.core.leases import Leases
from gateway.core.metrics import Metrics
from gateway.core.limits import Limits
from gateway.core.outcomes import Settlement
from gateway.core.namespace import Journal, Namespace, checked_name, checked_path
from gateway.core.permissions import Permissions
from gateway.core.thumbnails import Thumbnails
from gateway.db import Database
from gateway.db import files as files_db
from gateway.db import nodes as nodes_db
from gateway.db import uploads as uploads_db
from gateway.db.files import ChunkRow, FileRow
from gateway.db.nodes import FOLDER, ROOT, NodeRow
from gateway.db.uploads import UploadRow
from protocol.paths import name_key
from protocol.fingerprints import EMPTY_FINGERPRINT, chunk_length, composite_checksum, hex_to_b64
from protocol.states import ChunkStatus, FileStatus
from storage import ChecksumMismatch, CompletedPart, ObjectStore, PresignedRequest, StoredPart, StoreError, UploadNotFound

log = structlog.get_logger("gateway.uploads")
# upload-urls calls of one process that read, shape and presign their chunks at a time (see Uploads.upload_urls),
# and of one user: the others' calls find a slot free however many one user sends.
PRESIGN_CONCURRENCY = 4
PRESIGN_PER_USER = 2
# Seconds of an upload's last activity within which handing out more URLs records none (upload_urls):
# far below what activity decides (the reconciler's grace, 30 s by default; abandonment, a day).
TOUCH_AFTER = 5.0


@dataclass(frozen=True)
class UploadClaim:
    """What a client says it will upload; checked for consistency (gateway/http) before use."""

    file_name: str
    file_size: int
    file_type: str
    fingerprint: str
    chunk_size: int
    chunks: list[str]


@dataclass(frozen=True)
class Target:
    """Where the client asks the file to go (contract v1.2, Upload into the tree): a folder id or a whole
    path (missing parents are made), or neither (the root, under ``file_name``); the mode; ``replaces``."""

    parent_id: str | None = None
    path: str | None = None
    mode: str = "add"
    replaces: str | None = None


@dataclass(frozen=True)
class Destination:
    """Where an upload is headed, resolved: a folder (``root``: the owner's root) and a name. An upload is
    resumed only by the same content headed for the same place (name compared by protocol/paths.py's name_key)."""

    parent_id: str
    name: str
    mode: str = "add"
    replaces: str | None = None


@dataclass(frozen=True)
class InlineFile:
    """One file of a batch of small files (:meth:`Uploads.store_batch`): the claim made from its bytes (by
    the gateway, as for one inline file), where it goes, and the bytes."""

    claim: UploadClaim
    target: Target
    data: bytes


@dataclass(frozen=True)
class Started:
    """What a start or an inline upload did: the file, whether it is new, and when this call wrote it, the
    file as its transaction left it (``row`` with its path, and ``chunks``: what a read after the commit
    would give, so the answer is made without one). ``row`` None: an existing file (resumed, already
    there, sent in parts): read it."""

    file_id: str
    created: bool
    row: FileRow | None = None
    chunks: list[ChunkRow] | None = None


def new_file_id() -> str:
    # Hex: safe in paths and on command lines (a leading "-" would read as an option).
    return secrets.token_hex(16)


def new_file(user_id: int, claim: UploadClaim, status: FileStatus, now: str) -> tuple[dict, list[ChunkRow]]:
    """A new file's row (``files`` columns, a new id) and its chunks' rows, ``status`` now."""
    chunk_status = ChunkStatus.UPLOADED if status == FileStatus.UPLOADED else ChunkStatus.PENDING
    file = {
        "id": new_file_id(), "owner_id": user_id, "file_name": claim.file_name, "file_size": claim.file_size,
        "file_type": claim.file_type, "fingerprint": claim.fingerprint, "chunk_size": claim.chunk_size,
        "total_chunks": len(claim.chunks), "status": status,
        "created_at": now, "updated_at": now, "completed_at": now if status == FileStatus.UPLOADED else None,
    }
    chunks = [
        ChunkRow(idx=index, fingerprint=fp, size=chunk_length(index, claim.file_size, claim.chunk_size),
                 status=chunk_status, etag=None)
        for index, fp in enumerate(claim.chunks)
    ]
    return file, chunks


def upload_id_of(row: UploadRow) -> str:
    """The store's multipart upload of a file that is uploading: every such row has one (the status
    changes and the id is cleared in one statement)."""
    if row["upload_id"] is None:
        raise RuntimeError(f"file {row['id']} is {row['status']} without a multipart upload in the store")
    return row["upload_id"]


def verified_parts(chunks: list[ChunkRow], parts: list[StoredPart]) -> dict[int, StoredPart]:
    """Chunk index -> the stored part that holds exactly that chunk."""
    by_number = {part.part_number: part for part in parts}
    verified = {}
    for chunk in chunks:
        part = by_number.get(chunk["idx"] + 1)
        if part is None or part.size != chunk["size"]:
            continue
        # Where the store lists part checksums (MinIO does), they must match the claim.
        if part.sha256_b64 is not None and part.sha256_b64 != hex_to_b64(chunk["fingerprint"]):
            continue
        verified[chunk["idx"]] = part
    return verified


class Uploads:
    def __init__(self, config: Config, db: Database, store: ObjectStore, permissions: Permissions,
                 leases: Leases, limits: Limits, clock: Clock, namespace: Namespace, deletion: Deletion,
                 metrics: Metrics | None = None, thumbnails: Thumbnails | None = None):
        self.config = config
        # Contents of files that become uploaded are queued for a thumbnail in the same transaction.
        self.thumbnails = thumbnails or Thumbnails(config, db, store, clock)
        self.metrics = metrics or Metrics()
        self.db = db
        self.store = store
        self.permissions = permissions
        self.leases = leases
        self.limits = limits
        self.clock = clock
        self.namespace = namespace
        self.deletion = deletion
        self._presigning = FairShare(PRESIGN_CONCURRENCY, PRESIGN_PER_USER)

    # --- starting -----------------------------------------------------------------------------------

    async def start(self, user_id: int, claim: UploadClaim, target: Target | None = None) -> tuple[str, bool]:
        """Start (or resume) an upload; return (file id, created). See :meth:`begin`."""
        started = await self.begin(user_id, claim, target)
        return started.file_id, started.created

    async def begin(self, user_id: int, claim: UploadClaim, target: Target | None = None) -> Started:
        """Start (or resume) an upload: the file, whether it is new, and the file as written when it is.

        A new file must fit the user's limits (gateway/core/limits.py):
        QuotaExceeded, or TooManyUploads for one that needs an upload, checked
        in the read that looks for the file first, before any work in the
        store, and again when it is written. Resuming an upload the user
        already has (the same content headed for the same place) adds nothing,
        so it is never refused; neither does an ``add`` of the content the name
        already holds (that file is the answer).
        """
        destination, claim, known, checked = await self._place_and_known(user_id, claim, target or Target(),
                                                                         precheck=True)
        if known is not None:
            return known
        if not claim.chunks:
            await self._store_empty_content()
            started = await self._create_file(user_id, claim, destination, status=FileStatus.UPLOADED,
                                              upload_id=None)
            assert started is not None, "only a copy of own content is ever refused"
            return started
        if not checked:  # a copy of own content that was refused after all
            await self.limits.precheck(user_id, claim.file_size, uploading=True)  # before any work in the store
        key = content_key(claim.fingerprint)
        upload_id = await self.store.start_multipart(key)
        try:
            started = await self._create_file(user_id, claim, destination, status=FileStatus.UPLOADING,
                                              upload_id=upload_id)
            assert started is not None, "only a copy of own content is ever refused"
            return started
        except Exception:
            # Refused after all (a concurrent start took the last slot), or the insert failed.
            await self.store.abort_multipart(key, upload_id)
            raise

    async def _place_and_known(self, user_id: int, claim: UploadClaim, target: Target, *, precheck: bool,
                               slot: bool = True) -> tuple[Destination, UploadClaim, Started | None, bool]:
        """Where the file goes (:meth:`destination`), the claim under the name it takes there, what
        :meth:`_known` found, and whether the user's limits were checked for a new upload. A folder named
        by id is checked in the same read as the lookups (one read a file, not two: ``dbx upload -r``
        names every file's folder by id); with ``precheck``, so are the limits when the bytes must be sent
        (``slot``: an upload slot among them, which a file stored whole in one request does not take)."""
        # A path may make folders and ``update`` checks what it replaces: those are placed before the read.
        by_id = target.path is None and target.mode != "update"
        destination = None if by_id else await self.destination(user_id, claim, target)
        async with self.db.read(point=True) as conn:  # the folder, the limits, the lookups: each by key
            if destination is None:
                destination = await self.destination(user_id, claim, target, on=conn)
            claim = dataclasses.replace(claim, file_name=destination.name)
            found = await self._lookup(conn, user_id, claim, destination)
            checked = precheck and await self._precheck_new(conn, user_id, claim, *found, slot=slot)
        return destination, claim, await self._known(user_id, claim, destination, *found), checked

    async def _precheck_new(self, conn: AsyncConnection, user_id: int, claim: UploadClaim, same: UploadRow | None,
                            there: str | None, own: bool, *, slot: bool = True) -> bool:
        """The user's limits (Limits.precheck; ``slot``: the uploads in progress too) in the read ``conn`` when
        :meth:`_lookup` found nothing and the file has bytes to send: a new upload. Whether it checked."""
        if same is not None or there is not None or own or not claim.chunks:
            return False
        await self.limits.precheck(user_id, claim.file_size, uploading=slot, on=conn)
        return True

    async def _lookup(self, conn: AsyncConnection, user_id: int, claim: UploadClaim,
                      destination: Destination) -> tuple[UploadRow | None, str | None, bool]:
        """For :meth:`_known`, in one read: the user's upload of this content to this place, for ``add``
        the file holding the name if it has this content, whether the user holds this content verified."""
        same = await uploads_db.resumable(conn, user_id, claim.fingerprint, destination.parent_id,
                                          name_key(destination.name))
        there = None
        if same is None and destination.mode == "add":
            there = await self.namespace.same_content_at(user_id, destination.parent_id, destination.name,
                                                         claim.fingerprint, on=conn)
        own = same is None and there is None and await files_db.holds_verified_content(conn, user_id,
                                                                                       claim.fingerprint)
        return same, there, own

    async def _known(self, user_id: int, claim: UploadClaim, destination: Destination, same: UploadRow | None,
                     there: str | None, own: bool) -> Started | None:
        """The file when the start needs no new upload (:meth:`_lookup` found it): the user's upload of this
        content to this place (resumed), for ``add`` this content under the name already (that file is the
        answer), or content of the user's own the store holds verified (a deduplicated copy: no bytes
        move). None: the bytes must be sent."""
        if same is not None:
            await self.resume(same["id"])
            return Started(same["id"], False)
        if there is not None:
            return Started(there, False)
        if own:
            started = await self._create_file(user_id, claim, destination, status=FileStatus.UPLOADED,
                                              upload_id=None, copy_of_own_content=True)
            if started is not None:
                return started
            # Their last copy was deleted meanwhile: the bytes must be uploaded after all.
        return None

    async def destination(self, user_id: int, claim: UploadClaim, target: Target, *,
                          on: AsyncConnection | None = None) -> Destination:
        """Where the file goes: the folder (made along ``path`` if missing; NodeNotFound for a folder id that
        is none of the user's), the name (InvalidName), and for ``update`` a ``replaces`` that is a file
        of the user's at that place, now or as a version (ReplacesMismatch). ``on``: a read to check a
        folder named by id in."""
        if target.path is not None:
            segments = checked_path(target.path)
            if not segments:
                raise InvalidName("a file's path ends with its name")
            parent_id = ROOT
            if segments[:-1]:
                parent_id = (await self.namespace.make_path(user_id, "/" + "/".join(segments[:-1])))[0]["id"]
            name = segments[-1]
        else:
            parent_id = target.parent_id or ROOT
            await self.namespace.node(user_id, parent_id, FOLDER, on=on)
            name = checked_name(claim.file_name)
        if target.mode == "update":
            await self.namespace.check_replaces(user_id, target.replaces or "", parent_id, name)
        return Destination(parent_id, name, target.mode, target.replaces if target.mode == "update" else None)

    async def _create_file(self, user_id: int, claim: UploadClaim, destination: Destination, *, status: FileStatus,
                           upload_id: str | None, copy_of_own_content: bool = False,
                           stored: bytes | None = None) -> Started | None:
        """Insert the file and its chunks, and the session of an upload (``upload_id``: the store's); a file
        ``uploaded`` at once takes its place in the tree in the same transaction. The file as written, with
        its path (:class:`Started`).

        Checked against the user's limits in the same transaction, under a lock
        on the user's row (gateway/core/limits.py).

        ``copy_of_own_content``: a deduplicated copy, inserted only if the user still
        holds verified content with this fingerprint, checked in the same transaction
        (a delete of their last copy may have committed since we looked); None if not.
        The content lock orders this insert against a delete of the content
        (gateway/core/deletion.py).

        ``stored``: the bytes of a one-chunk file just stored whole (:meth:`upload_inline`), stored again
        here, under the content lock, if a removal of the content ran since (gateway/core/deletion.py).
        """
        now = stamp_now(self.clock)
        file, chunks = new_file(user_id, claim, status, now)
        file_id = file["id"]
        async with self.db.transaction() as conn:
            if status == FileStatus.UPLOADED:  # no upload to wait for: it takes its place now
                async with self.namespace.changing(user_id, conn) as journal:  # the user's row locked
                    room = await self.limits.check_locked(conn, user_id, claim.file_size)
                    await self.db.lock_content(conn, claim.fingerprint)
                    if copy_of_own_content and not await files_db.holds_verified_content(conn, user_id, claim.fingerprint):
                        return None
                    if stored is not None and await files_db.content_dropped(conn, claim.fingerprint):
                        await self._store_again(claim, stored)
                    seq = await files_db.insert_file(conn, file, chunks)
                    thumbnail = await self.thumbnails.want(conn, claim.fingerprint, claim.file_size, claim.file_type,
                                                           destination.name)
                    node, replaced = await self.namespace.place_file(journal, file_id, destination.parent_id,
                                                                     destination.name, destination.mode,
                                                                     destination.replaces)
                row = files_db.inserted_row(file, seq, room.owner_name, node["parent_id"], node["name"],
                                            node["modified_at"])
            else:
                assert upload_id is not None, "an upload in progress has the store's multipart upload"
                room = await self.limits.check_start(conn, user_id, claim.file_size, uploading=True)
                await self.db.lock_content(conn, claim.fingerprint)
                seq = await files_db.insert_file(conn, file, chunks)
                await uploads_db.insert_upload(conn, {
                    "file_id": file_id, "owner_id": user_id, "upload_id": upload_id,
                    "parent_id": destination.parent_id, "name": destination.name,
                    "name_key": name_key(destination.name), "mode": destination.mode,
                    "replaces": destination.replaces, "active_at": now,
                })
                row = files_db.inserted_row(file, seq, room.owner_name, destination.parent_id, claim.file_name, now)
            await self.namespace.with_paths([row], user_id, on=conn)
        if status == FileStatus.UPLOADED:
            await self._placed(journal, replaced, thumbnail)
        self.metrics.upload_started(claim.file_size)
        if status == FileStatus.UPLOADED:
            self.metrics.uploads_completed.inc()
        log.info("file_created", file_id=file_id, status=status, size=claim.file_size, chunks=len(claim.chunks))
        return Started(file_id, True, row, chunks)

    async def _store_empty_content(self) -> None:
        """An empty file has no parts to upload: the gateway writes the empty object itself."""
        key = content_key(EMPTY_FINGERPRINT)
        if await self.store.stat(key) is None:
            await self.store.put_object(key, b"", hex_to_b64(EMPTY_FINGERPRINT))

    # --- progress -----------------------------------------------------------------------------------

    async def upload_urls(self, user_id: int, file_id: str, indexes: list[int] | None) -> list[tuple[int, PresignedRequest]]:
        """Presigned PUTs for the chunks asked for (default: every chunk the store does not hold yet).

        At most PRESIGN_CONCURRENCY calls of this process do their work at a
        time; the others wait their turn, suspended. Each call reads, shapes and
        presigns its chunk rows on the event loop (5,120 of them for a 40 GiB
        file; the store lets other requests in between batches): forty such calls
        ready at once would keep every other request waiting behind all of them
        (bench/limits.py measures /healthz meanwhile). The turns are shared
        fairly between users (gateway/core/fairshare.py): one user's burst of
        calls holds at most PRESIGN_PER_USER of them and waits its turn behind
        other users' calls, not in front of them.
        """
        # The session and its chunks: one snapshot, one read. The session names its owner, so the upload of
        # the caller's own is all it takes; anything else is answered as the permissions say (FileNotFound
        # unless the caller owns the file, NotUploading if they do).
        async with self.db.read(point=True) as conn:  # by key: the session, its chunks (up to 5,120)
            row = await uploads_db.get_upload(conn, file_id)
            ours = row is not None and row["owner_id"] == user_id
            chunks = await files_db.get_chunks(conn, file_id) if ours else []
        if row is None or not ours:
            owned, _ = await self.permissions.owned(user_id, file_id)
            raise NotUploading(owned["status"] if owned["status"] != FileStatus.UPLOADING else FileStatus.FAILED)
        async with self._presigning.slot(user_id):
            presigned = await self._presign(row, chunks, indexes)
        # Handing out URLs is activity: the upload is not abandoned. A write transaction for it only when
        # the last activity is TOUCH_AFTER old: a small file's one call comes right after its start.
        if row["active_at"] <= stamp_ago(self.clock, TOUCH_AFTER):
            await uploads_db.touch(self.db, file_id, stamp_now(self.clock))
        return presigned

    async def _presign(self, row: UploadRow, chunks: list[ChunkRow],
                       indexes: list[int] | None) -> list[tuple[int, PresignedRequest]]:
        if indexes is None:
            wanted = {c["idx"] for c in chunks if c["status"] != ChunkStatus.UPLOADED}
        else:
            out_of_range = [i for i in indexes if not 0 <= i < row["total_chunks"]]
            if out_of_range:
                raise ChunkIndexOutOfRange(out_of_range, row["total_chunks"])
            wanted = set(indexes)
        parts = [(c["idx"] + 1, hex_to_b64(c["fingerprint"])) for c in chunks if c["idx"] in wanted]
        presigned = await self.store.presign_upload_parts(
            content_key(row["fingerprint"]), upload_id_of(row), parts, self.config.upload_url_ttl
        )
        return [(number - 1, request) for (number, _), request in zip(parts, presigned, strict=True)]

    async def _mark_chunks(self, file_id: str, upload_id: str, chunks: list[ChunkRow],
                           verified: dict[int, StoredPart]) -> None:
        """Record which chunks the store lists in ``upload_id``.

        Only the chunks whose record differs are written (``chunks`` as read before
        the part list): reading the list of a 5,120-part upload again writes only what is new.
        """
        known = {chunk["idx"]: (chunk["status"], chunk["etag"]) for chunk in chunks}
        etags = {index: part.etag for index, part in verified.items()
                 if known.get(index) != (ChunkStatus.UPLOADED, part.etag)}
        if etags:
            async with self.db.transaction() as conn:
                await uploads_db.mark_chunks(conn, file_id, upload_id, etags, stamp_now(self.clock))

    async def refresh_from_store(self, file_id: str) -> dict[int, StoredPart] | None:
        """Ask the store which chunks it holds. None when the multipart upload is gone."""
        row = await uploads_db.get_upload(self.db, file_id)
        if row is None:
            return None
        upload_id = upload_id_of(row)
        chunks = await files_db.get_chunks(self.db, file_id)
        try:
            parts = await self.store.list_parts(content_key(row["fingerprint"]), upload_id)
        except UploadNotFound:
            return None
        verified = verified_parts(chunks, parts)
        await self._mark_chunks(file_id, upload_id, chunks, verified)
        return verified

    async def resume(self, file_id: str) -> None:
        """Bring chunk statuses up to date; restart the multipart upload if the store dropped it."""
        async with self.leases.hold(file_id):
            row = await uploads_db.get_upload(self.db, file_id)
            if row is None:
                return
            if await self.refresh_from_store(file_id) is not None:
                return
            if await self._settle_from_object(row):
                return
            # The store forgot the upload (aborted by a lifecycle rule, say): start over.
            upload_id = await self.store.start_multipart(content_key(row["fingerprint"]))
            async with self.db.transaction() as conn:
                await uploads_db.restart_upload(conn, file_id, upload_id, stamp_now(self.clock))
            log.info("upload_restarted", file_id=file_id, reason="the store no longer has the multipart upload")

    # --- settling -----------------------------------------------------------------------------------

    async def _object_matches(self, row: UploadRow) -> bool:
        """Whether the store holds this file's bytes: the object's size, and its checksum as the store computed
        it, composite for an object assembled from parts; for one chunk stored whole (a small file sent
        inline, :meth:`upload_inline`), the plain SHA-256, which is that chunk's fingerprint."""
        stored = await self.store.stat(content_key(row["fingerprint"]))
        if stored is None or stored.size != row["file_size"]:
            return False
        if stored.sha256_checksum == composite_checksum(row["fingerprint"], row["total_chunks"]):
            return True
        if row["total_chunks"] != 1:
            return False
        [chunk] = await files_db.get_chunks(self.db, row["id"])
        return stored.sha256_checksum == hex_to_b64(chunk["fingerprint"])

    async def _settle_from_object(self, row: UploadRow) -> bool:
        """The multipart upload is gone (we completed it, then crashed before recording it).

        The object alone proves nothing about *this* user: another user's upload
        may have written it, and anyone who knows a fingerprint can claim it.
        Only when the store itself had listed every chunk as a part of this
        upload (ListParts: each chunk then has the ETag the store gave it; an
        event, forged or not, never sets one) did this user send all the bytes,
        and only then does a verified object settle the upload.
        """
        if await files_db.unverified_chunks(self.db, row["id"]) == 0 and await self._object_matches(row):
            await self._mark_uploaded(row["id"])
            return True
        return False

    async def _mark_uploaded(self, file_id: str) -> bool:
        """uploading -> uploaded, and the file takes its place in the tree, in one transaction: the name is
        decided now (the session's mode), not when the upload started."""
        async with self.db.transaction() as conn:
            session = await uploads_db.get_upload(conn, file_id)
            if session is None:
                return False
            async with self.namespace.changing(session["owner_id"], conn) as journal:
                changed = await files_db.mark_uploaded(conn, file_id, stamp_now(self.clock))
                if changed:
                    thumbnail = await self.thumbnails.want(conn, session["fingerprint"], session["file_size"],
                                                           session["file_type"], session["name"])
                    _, replaced = await self.namespace.place_file(journal, file_id, session["parent_id"] or ROOT,
                                                                  session["name"], session["mode"], session["replaces"])
        if changed:
            self.metrics.uploads_completed.inc()
            log.info("file_uploaded", file_id=file_id)
            await self.permissions.invalidate(file_id)
            await self._placed(journal, replaced, thumbnail)
        return changed

    async def _placed(self, journal: Journal, replaced: str | None, thumbnail: bool) -> None:
        """After the commit: the tree change is logged, a replaced file's cached facts are forgotten
        (it is a version now, and its shares went to the new file), this gateway's thumbnail worker
        is woken when the content was queued."""
        self.namespace.committed(journal)
        if thumbnail:
            self.thumbnails.nudge()
        if replaced is not None:
            await self.permissions.invalidate(replaced)

    async def _mark_failed(self, file_id: str, reason: str) -> bool:
        changed = await files_db.mark_failed(self.db, file_id, reason, stamp_now(self.clock))
        if changed:
            self.metrics.uploads_failed.inc()
            log.warning("file_failed", file_id=file_id, reason=reason)
            await self.permissions.invalidate(file_id)
        return changed

    async def complete(self, file_id: str, *, strict: bool = True) -> FileStatus | None:
        """Finish the upload once the store holds every chunk; return the file's status (None: no such file).

        ``strict`` raises ChunksMissing (or UploadGone) when it cannot finish
        (the client asked); otherwise (events, reconciliation) it returns quietly.
        """
        async with self.leases.hold(file_id):
            return await self._complete_held(file_id, strict=strict)

    async def _complete_held(self, file_id: str, *, strict: bool) -> FileStatus | None:
        row = await uploads_db.get_upload(self.db, file_id)
        if row is None:
            settled = await files_db.get_file(self.db, file_id)
            return settled["status"] if settled else None
        key, upload_id = content_key(row["fingerprint"]), upload_id_of(row)
        chunks = await files_db.get_chunks(self.db, file_id)
        try:
            parts = await self.store.list_parts(key, upload_id)
        except UploadNotFound:
            if await self._settle_from_object(row):
                return FileStatus.UPLOADED
            if strict:
                raise UploadGone() from None
            return FileStatus.UPLOADING
        verified = verified_parts(chunks, parts)
        await self._mark_chunks(file_id, upload_id, chunks, verified)
        missing = [c["idx"] for c in chunks if c["idx"] not in verified]
        if missing:
            if strict:
                raise ChunksMissing(missing)
            return FileStatus.UPLOADING
        completed = [CompletedPart(c["idx"] + 1, verified[c["idx"]].etag, hex_to_b64(c["fingerprint"])) for c in chunks]
        try:
            await self.store.complete_multipart(key, upload_id, completed)
        except ChecksumMismatch as exc:
            return await self._fail_and_discard(row, f"the store's bytes do not match the chunk fingerprints ({exc})")
        except UploadNotFound:
            pass  # completed concurrently (a lease outlived): the object check below decides
        if await self._object_matches(row):
            await self._mark_uploaded(file_id)
            return FileStatus.UPLOADED
        return await self._fail_and_discard(row, "the stored object's checksum does not match the file fingerprint")

    async def finish(self, user_id: int, file_id: str) -> None:
        """The owner asks to complete: ChunksMissing, UploadGone or VerificationFailed unless it is uploaded."""
        await self.permissions.owned(user_id, file_id)
        if await self.complete(file_id) == FileStatus.FAILED:
            row, _ = await self.permissions.owned(user_id, file_id)
            raise VerificationFailed(row["failure_reason"] or "no reason recorded")

    async def _fail_and_discard(self, row: UploadRow, reason: str) -> FileStatus:
        """Mark the file failed and remove its partial data, never content another file relies on."""
        await self.store.abort_multipart(content_key(row["fingerprint"]), upload_id_of(row))
        await self._mark_failed(row["id"], reason)
        still_needed = await files_db.content_referenced(self.db, row["fingerprint"], (FileStatus.UPLOADED,))
        if not still_needed and not await self._object_matches(row):
            await self.store.delete(content_key(row["fingerprint"]))
        return FileStatus.FAILED

    async def abandon(self, file_id: str) -> bool:
        """Abort an upload nobody finished; an upload that completed is never touched."""
        async with self.leases.hold(file_id):
            return await self._abandon_held(file_id)

    async def _abandon_held(self, file_id: str) -> bool:
        row = await uploads_db.get_upload(self.db, file_id)
        if row is None:
            return False
        if await self._settle_from_object(row):
            return False
        await self.store.abort_multipart(content_key(row["fingerprint"]), upload_id_of(row))
        return await self._mark_failed(file_id, "abandoned: no progress for too long; upload it again")

    async def settle_if_free(self, file_id: str, *, abandon: bool) -> Settlement:
        """The reconciler's step: abandon or complete, unless another gateway is settling it right now."""
        async with self.leases.hold_if_free(file_id) as held:
            if not held:
                return Settlement.BUSY
            if not await uploads_db.exists_upload(self.db, file_id):
                return Settlement.UNCHANGED  # settled since the reconciler listed it
            if abandon:
                return Settlement.ABANDONED if await self._abandon_held(file_id) else Settlement.UNCHANGED
            completed = await self._complete_held(file_id, strict=False) == FileStatus.UPLOADED
            return Settlement.COMPLETED if completed else Settlement.UNCHANGED

    # --- inline uploads -----------------------------------------------------------------------------

    async def upload_inline(self, user_id: int, claim: UploadClaim, spool: BinaryIO, target: Target | None = None) -> str:
        """A small file whose bytes the gateway holds (``spool``); its id. See :meth:`store_inline`."""
        return (await self.store_inline(user_id, claim, spool, target)).file_id

    async def store_inline(self, user_id: int, claim: UploadClaim, spool: BinaryIO,
                           target: Target | None = None, *, precheck: bool = False) -> Started:
        """A small file whose bytes the gateway holds (``spool``) and fingerprinted itself; the file, as
        written when this call wrote it.

        One chunk: stored whole with one PutObject that carries the bytes' SHA-256 (the chunk's
        fingerprint), which the store checks against the bytes it receives (S3, MinIO and SeaweedFS
        refuse others: ChecksumMismatch, nothing stored). Only once the store holds them is the file
        recorded, ``uploaded`` and in its place, in one transaction (:meth:`_create_file`). Larger
        files, and an upload of the same content to the same place already under way, go through the
        multipart path as any client's chunks do. The user's limits were checked before the bytes
        were read (gateway/http/routes/uploads.py), or with ``precheck`` (a small body, read first) in
        the read that looks for the file, before the bytes are stored; and they are checked again in
        the transaction; a file refused there leaves no object behind that nothing refers to.
        """
        if len(claim.chunks) != 1:
            return Started(await self._upload_inline_parts(user_id, claim, spool, target), True)
        destination, claim, known, _ = await self._place_and_known(user_id, claim, target or Target(),
                                                                   precheck=precheck, slot=False)
        if known is not None:
            return known if known.row is not None else Started(await self._finish_spooled(known.file_id, spool),
                                                               known.created)
        spool.seek(0)
        data = spool.read()
        await self.store.put_object(content_key(claim.fingerprint), data, hex_to_b64(claim.chunks[0]))
        try:
            started = await self._create_file(user_id, claim, destination, status=FileStatus.UPLOADED,
                                              upload_id=None, stored=data)
        except BaseException:
            await self.deletion.drop_unreferenced_content(claim.fingerprint)
            raise
        assert started is not None, "only a copy of own content is ever refused"
        return started

    async def _store_again(self, claim: UploadClaim, data: bytes) -> None:
        """Under the content lock: put the one-chunk file's bytes back if a removal of the content took them."""
        key = content_key(claim.fingerprint)
        stored = await self.store.stat(key)
        checksum = hex_to_b64(claim.chunks[0])
        if stored is None or stored.size != len(data) or stored.sha256_checksum not in (
                checksum, composite_checksum(claim.fingerprint, 1)):
            await self.store.put_object(key, data, checksum)
            log.info("content_stored_again", key=key, reason="removed after this upload stored it")

    async def _upload_inline_parts(self, user_id: int, claim: UploadClaim, spool: BinaryIO,
                                   target: Target | None) -> str:
        """An inline file of several chunks: through the same multipart path as any client upload."""
        file_id, _created = await self.start(user_id, claim, target)
        return await self._finish_spooled(file_id, spool)

    async def _finish_spooled(self, file_id: str, spool: BinaryIO) -> str:
        """Send the chunks of ``file_id`` the store lacks from ``spool``, then complete: StoreDidNotAccept unless
        the file is ``uploaded`` then (nothing is sent for a file already uploaded)."""
        await self._send_spooled_chunks(file_id, spool)
        status = await self.complete(file_id)
        if status != FileStatus.UPLOADED:
            raise StoreDidNotAccept(status or "missing")
        return file_id

    async def _send_spooled_chunks(self, file_id: str, spool: BinaryIO) -> None:
        row = await uploads_db.get_upload(self.db, file_id)
        if row is None:
            return  # deduplicated, an empty file, or deleted meanwhile (complete() then says None)
        key, upload_id = content_key(row["fingerprint"]), upload_id_of(row)
        for chunk in await files_db.get_chunks(self.db, file_id):
            if chunk["status"] == ChunkStatus.UPLOADED:
                continue
            spool.seek(chunk["idx"] * row["chunk_size"])
            data = spool.read(chunk["size"])
            await self.store.upload_part(key, upload_id, chunk["idx"] + 1, data, hex_to_b64(chunk["fingerprint"]))


    # --- batches of small files ---------------------------------------------------------------------

    async def store_batch(self, user_id: int, batch: list[InlineFile]) -> list[Started | DomainError | StoreError]:
        """Small files whose bytes the gateway holds, each stored as :meth:`store_inline` stores one; each
        file's answer or refusal, in the order given (``POST /dropbox/v1/files/batch``, beyond the contract).

        What one request a file costs is paid once a batch here. The files that are new to the user and go
        into a folder named by id in mode ``add`` or ``overwrite`` (all of a first ``dbx upload -r``) are
        looked up in one read, which also checks the user's limits for them together; their bytes are
        stored at once, a PutObject each carrying its SHA-256, which the store checks as for one file; and
        those the store took are recorded in one write transaction (:meth:`_create_files`). Every other
        file (a ``path``, ``update``, its upload under way, content the user or the name holds already, a
        second file for one name, more than one chunk), and the batch's files when they do not fit the
        user's limits together or their transaction fails, go through :meth:`store_inline` one by one
        afterwards: the checks and answers of a file sent alone.
        """
        results: list[Started | DomainError | StoreError | None] = [None] * len(batch)
        fast, alone = await self._sort_batch(user_id, batch, results)
        if fast:
            alone += await self._store_fast(user_id, batch, fast, results)
        for index in sorted(alone):
            item = batch[index]
            try:
                results[index] = await self.store_inline(user_id, item.claim, io.BytesIO(item.data), item.target,
                                                         precheck=True)
            except (DomainError, StoreError) as exc:
                results[index] = exc
        answered = [result for result in results if result is not None]
        assert len(answered) == len(batch), "every file of a batch has its answer"
        return answered

    async def _sort_batch(self, user_id: int, batch: list[InlineFile],
                          results: list) -> tuple[list[tuple[int, Destination]], list[int]]:
        """In one read: the files that take the batch's way (their index and destination) and the indexes
        of those that go alone (:meth:`store_batch`); a file whose folder or name is refused gets that
        refusal as its result. Each folder is checked once, and :meth:`_lookup`'s lookups are made for
        all the files together, a query for each kind (:meth:`_found_in_batch`).

        The first file that goes alone and may take a name (any but one whose name already holds its
        content) sends every file after it alone too: the batch's files are placed before those that go
        alone, so each file then takes the name it would take if the files had come one by one, in order."""
        fast: list[tuple[int, Destination]] = []
        alone: list[int] = []
        places: set[tuple[str, str]] = set()
        async with self.db.read(point=True) as conn:
            placed = await self._places_in_batch(conn, user_id, batch, results)
            found = await self._found_in_batch(conn, user_id, batch, placed)
            for index, destination in placed.items():
                if destination is None:
                    alone += range(index, len(batch))
                    break
                kind = found.get(index)
                place = (destination.parent_id, name_key(destination.name))
                if kind == "there":
                    alone.append(index)
                    continue
                if kind is not None or place in places:
                    alone += range(index, len(batch))
                    break
                places.add(place)
                fast.append((index, destination))
            if fast:
                try:
                    await self.limits.precheck(user_id, sum(batch[index].claim.file_size for index, _ in fast),
                                               uploading=False, on=conn, files=len(fast))
                except DomainError:  # not all of them fit: each is checked alone, and refused alone
                    alone += [index for index, _ in fast]
                    fast = []
        return fast, alone

    async def _places_in_batch(self, conn: AsyncConnection, user_id: int, batch: list[InlineFile],
                               results: list) -> dict[int, Destination | None]:
        """Index -> where the file goes (:meth:`destination` for a folder named by id, each folder checked once
        in ``conn``), in order; None for a file that can only go alone (a path, ``update``, several chunks).
        A file whose folder or name is refused gets that refusal as its result and no entry."""
        folders: dict[str, DomainError | None] = {}
        placed: dict[int, Destination | None] = {}
        for index, item in enumerate(batch):
            target = item.target
            if target.path is not None or target.mode == "update" or len(item.claim.chunks) != 1:
                placed[index] = None
                continue
            parent_id = target.parent_id or ROOT
            if parent_id not in folders:
                try:
                    await self.namespace.node(user_id, parent_id, FOLDER, on=conn)
                    folders[parent_id] = None
                except DomainError as exc:
                    folders[parent_id] = exc
            refusal = folders[parent_id]
            if refusal is not None:
                results[index] = refusal
                continue
            try:
                placed[index] = Destination(parent_id, checked_name(item.claim.file_name), target.mode)
            except DomainError as exc:
                results[index] = exc
        return placed

    async def _found_in_batch(self, conn: AsyncConnection, user_id: int, batch: list[InlineFile],
                              placed: dict[int, Destination | None]) -> dict[int, str]:
        """What :meth:`_lookup` finds for each file placed, in ``conn``, a query for each kind of lookup rather
        than for each file: index -> ``under_way`` (the user's upload of this content to this place),
        ``there`` (for ``add``: the name holds this content), ``own`` (the user holds the content verified);
        no entry where it finds nothing."""
        wanted = {index: destination for index, destination in placed.items() if destination is not None}
        fingerprints = [batch[index].claim.fingerprint for index in wanted]
        if not wanted:
            return {}
        under_way = await uploads_db.uploading_places(conn, user_id, fingerprints)
        named: dict[str, dict[str, tuple[str, str]]] = {}
        for destination in wanted.values():
            if destination.mode == "add" and destination.parent_id not in named:
                keys = [name_key(d.name) for d in wanted.values() if d.parent_id == destination.parent_id]
                named[destination.parent_id] = await nodes_db.files_named(conn, user_id, destination.parent_id, keys)
        own = await files_db.verified_contents(conn, user_id, fingerprints)
        found = {}
        for index, destination in wanted.items():
            fingerprint, key = batch[index].claim.fingerprint, name_key(destination.name)
            holder = named.get(destination.parent_id, {}).get(key) if destination.mode == "add" else None
            if (fingerprint, destination.parent_id, key) in under_way:
                found[index] = "under_way"
            elif holder is not None and holder[1] == fingerprint:
                found[index] = "there"
            elif fingerprint in own:
                found[index] = "own"
        return found

    async def _store_fast(self, user_id: int, batch: list[InlineFile], fast: list[tuple[int, Destination]],
                          results: list) -> list[int]:
        """The bytes of the batch's files to the store at once, then those the store took recorded together
        (a file the store refused gets that refusal as its result); the indexes that must go alone after
        all: all of them when their transaction is refused (the limits, checked again under the lock)."""
        puts = await asyncio.gather(*(
            self.store.put_object(content_key(batch[index].claim.fingerprint), batch[index].data,
                                  hex_to_b64(batch[index].claim.chunks[0]))
            for index, _ in fast), return_exceptions=True)
        stored = []
        for (index, destination), put in zip(fast, puts, strict=True):
            if isinstance(put, StoreError):
                results[index] = put
            elif isinstance(put, BaseException):
                raise put
            else:
                stored.append((index, destination))
        new = [(dataclasses.replace(batch[index].claim, file_name=destination.name), destination, batch[index].data)
               for index, destination in stored]
        try:
            written = await self._create_files(user_id, new) if new else []
        except BaseException as exc:
            for fingerprint in sorted({claim.fingerprint for claim, _, _ in new}):
                await self.deletion.drop_unreferenced_content(fingerprint)
            if isinstance(exc, DomainError):
                return [index for index, _ in stored]
            raise
        for (index, _), started in zip(stored, written, strict=True):
            results[index] = started
        return []

    async def _create_files(self, user_id: int, new: list[tuple[UploadClaim, Destination, bytes]]) -> list[Started]:
        """What :meth:`_create_file` does for one file just stored whole, for several in one transaction:
        the user's limits checked for them together under the lock on their row, the content locks, the
        rows inserted with one statement a table, the files placed in the tree in order (each run of files
        in mode ``add`` by Namespace.place_new_files, one statement for their nodes and one for their
        journal records), the paths read once. Bytes a removal of the content took since they were stored are stored again."""
        now = stamp_now(self.clock)
        rows = [new_file(user_id, claim, FileStatus.UPLOADED, now) for claim, _, _ in new]
        replaced: list[str] = []
        thumbnail = False
        async with self.db.transaction() as conn:
            async with self.namespace.changing(user_id, conn) as journal:
                room = await self.limits.check_locked(conn, user_id, sum(claim.file_size for claim, _, _ in new),
                                                      files=len(new))
                for fingerprint in sorted({claim.fingerprint for claim, _, _ in new}):
                    await self.db.lock_content(conn, fingerprint)
                dropped = await files_db.contents_dropped(conn, (claim.fingerprint for claim, _, _ in new))
                for claim, _, data in new:
                    if claim.fingerprint in dropped:
                        await self._store_again(claim, data)
                seqs = await files_db.insert_files(conn, rows)
                for claim, destination, _ in new:
                    thumbnail = await self.thumbnails.want(conn, claim.fingerprint, claim.file_size, claim.file_type,
                                                           destination.name) or thumbnail
                nodes: dict[str, NodeRow] = {}
                added: list[tuple[str, str, str]] = []  # files in mode add not placed yet: placed together
                for (file, _), (_, destination, _) in zip(rows, new, strict=True):
                    if destination.mode == "add":
                        added.append((file["id"], destination.parent_id, destination.name))
                        continue
                    nodes.update((node["id"], node) for node in await self.namespace.place_new_files(journal, added))
                    added = []
                    nodes[file["id"]], was = await self.namespace.place_file(
                        journal, file["id"], destination.parent_id, destination.name, destination.mode, None)
                    replaced += [was] if was is not None else []
                nodes.update((node["id"], node) for node in await self.namespace.place_new_files(journal, added))
            written = [files_db.inserted_row(file, seq, room.owner_name, nodes[file["id"]]["parent_id"],
                                             nodes[file["id"]]["name"], nodes[file["id"]]["modified_at"])
                       for (file, _), seq in zip(rows, seqs, strict=True)]
            await self.namespace.with_paths(written, user_id, on=conn)
        await self._placed(journal, None, thumbnail)
        for file_id in replaced:
            await self.permissions.invalidate(file_id)
        for file, _ in rows:
            self.metrics.upload_started(file["file_size"])
            self.metrics.uploads_completed.inc()
        log.info("files_created", file_ids=[file["id"] for file, _ in rows], status=FileStatus.UPLOADED,
                 size=sum(file["file_size"] for file, _ in rows))
        return [Started(row["id"], True, row, chunks) for row, (_, chunks) in zip(written, rows, strict=True)]
