"""The metadata tables as the queries see them (SQLAlchemy Core).

The schema itself is made by the Alembic revisions in gateway/db/migrations/;
this module describes what they build, for writing queries. Timestamps are
ISO-8601 UTC text (they sort as text and read the same on both engines).
Statuses are text too, read as members of protocol/states.py's enums (:class:`StatusText`).
"""
from __future__ import annotations

import enum
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Column, Dialect, ForeignKey, Integer, MetaData, Table, Text
from sqlalchemy.types import TypeDecorator

from protocol.states import ChunkStatus, FileStatus

S = TypeVar("S", bound=enum.StrEnum)
metadata = MetaData()


class StatusText(TypeDecorator[S]):
    """A TEXT column (the SQL stays as it was) whose values are members of ``states``.

    Read: the text becomes its member, so ``row["status"] is FileStatus.UPLOADED``;
    a value that is no member (a row written by other code, a typo in a hand-made
    fix) raises ValueError instead of passing through. Written or compared: a
    member or its string, checked the same way before any SQL runs.
    """

    impl = Text
    cache_ok = True

    def __init__(self, states: type[S]):
        super().__init__()
        self.states = states

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.states(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> S | None:
        return None if value is None else self.states(value)


users = Table(
    "users",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    # Unique without regard to case (an index on lower(username)); compared as lower() = lower().
    Column("username", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    # In every access token as `gen`; a password change increments it, ending every token issued before.
    Column("token_generation", Integer, nullable=False, server_default="0"),
    # This user's storage quota in bytes; NULL: GATEWAY_USER_QUOTA_BYTES; 0: unlimited.
    Column("quota_bytes", BigInteger),
    # When an operator disabled the user (python -m gateway.admin); NULL: enabled.
    Column("disabled_at", Text),
    # The highest seq of this user's change journal rows pruned (revision 0010): older cursors are reset.
    Column("changes_pruned_through", BigInteger().with_variant(Integer(), "sqlite"), nullable=False, server_default="0"),
)

# Invitation codes for GATEWAY_SIGNUP=invite (revision 0009): the code's SHA-256 only, never the code.
invitations = Table(
    "invitations",
    metadata,
    Column("code_hash", Text, primary_key=True),
    Column("created_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("used_at", Text),  # NULL: not used yet
    Column("used_by", ForeignKey("users.id", ondelete="SET NULL")),
)

# One row per file a user has: what it is (name, size, type, content) and its status. How an upload in
# progress is arriving is in `uploads`. `seq` orders listings and pages them; `id` is the public file id.
files = Table(
    "files",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("id", Text, nullable=False, unique=True),
    Column("owner_id", ForeignKey("users.id"), nullable=False),
    Column("file_name", Text, nullable=False),
    Column("file_size", BigInteger, nullable=False),
    Column("file_type", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("chunk_size", BigInteger, nullable=False),
    Column("total_chunks", Integer, nullable=False),
    Column("status", StatusText(FileStatus), nullable=False),
    Column("failure_reason", Text),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("completed_at", Text),
)

# One row per upload in progress (revision 0007), keyed by the id the file has: the store's multipart
# upload, where the file is headed, and the settling machinery. Gone once the file is uploaded or failed.
uploads = Table(
    "uploads",
    metadata,
    Column("file_id", ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    Column("owner_id", ForeignKey("users.id"), nullable=False),
    Column("upload_id", Text, unique=True),  # the store's multipart upload
    # Where the file is headed: the folder ("root": the owner's root), the name and its name_key, and
    # what happens when the name is taken once it is uploaded (mode add/overwrite/update, replaces).
    Column("parent_id", Text, nullable=False, server_default="root"),
    Column("name", Text, nullable=False),
    Column("name_key", Text, nullable=False),
    Column("mode", Text, nullable=False, server_default="add"),
    Column("replaces", Text),
    Column("active_at", Text, nullable=False),  # the last activity: an upload quiet too long is abandoned
    # Who is settling the upload right now (gateway/core/leases.py), until when.
    Column("lease_token", Text),
    Column("lease_expires_at", Text),
    # Since when a store part event asks for the upload's part list to be read again (NULL: nobody asks).
    Column("parts_marked_at", Text),
    # When the reconciler last asked the store about this upload.
    Column("checked_at", Text),
)

chunks = Table(
    "chunks",
    metadata,
    Column("file_id", ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("status", StatusText(ChunkStatus), nullable=False, server_default=ChunkStatus.PENDING.value),
    Column("etag", Text),
)

shares = Table(
    "shares",
    metadata,
    Column("file_id", ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("created_at", Text, nullable=False),
)

# Shared links (revision 0004): the token's SHA-256 only, never the token.
links = Table(
    "links",
    metadata,
    Column("id", Text, primary_key=True),
    Column("file_id", ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("password_hash", Text),  # scrypt (gateway/core/passwords.py); NULL: no password
    Column("expires_at", Text),  # NULL: never
    Column("created_at", Text, nullable=False),
    Column("revoked_at", Text),  # NULL: live
    Column("download_count", BigInteger, nullable=False, server_default="0"),
)

# Failure counters of gateway/core/throttle.py, one row per key ("login-user:alice", "login-address:10.0.0.1").
throttle = Table(
    "throttle",
    metadata,
    Column("key", Text, primary_key=True),
    Column("failures", Integer, nullable=False),  # counted in the current window
    Column("window_ends_at", Text, nullable=False),
    Column("blocked_until", Text),  # NULL: not blocked
)

# Access tokens ended by a log-out, until they would have expired anyway.
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("revoked_at", Text, nullable=False),
)

# The tree (revision 0008): one row per folder and per file placed in its owner's tree (a file's node
# has the file's id). parent_id "root": the owner's root, which has no row. name_key (protocol/paths.py)
# is unique among the live entries of a folder (nodes_live_names). Versions (replaced_by) and the trash
# (deleted_at, deleted_path, trashed_with) are states of these rows; live rows have neither.
nodes = Table(
    "nodes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("owner_id", ForeignKey("users.id"), nullable=False),
    Column("kind", Text, nullable=False),  # "folder" or "file"
    Column("parent_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("name_key", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("modified_at", Text, nullable=False),
    Column("replaced_by", Text),  # the file that replaced this one: this is a version of it
    Column("replaced_at", Text),
    Column("deleted_at", Text),  # in the trash since
    Column("deleted_path", Text),  # the path it had when it went to the trash
    Column("trashed_with", Text),  # the trash entry it went with: its own id, or the deleted folder's
)

# The change journal (revision 0010): one row per change to a user's tree, written in the change's own
# transaction (gateway/core/namespace.py); seq orders one user's rows as they committed.
changes = Table(
    "changes",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("owner_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),  # created, moved, replaced, trashed, restored, purged
    Column("node_id", Text, nullable=False),
    Column("node_kind", Text, nullable=False),  # folder or file
    Column("path", Text),  # the path it had: a move's old path, a deletion's path
    Column("recorded_at", Text, nullable=False),
)

# Listings of a whole tree (GET /dropbox/v1/changes without a cursor) as they were at one moment,
# kept while their pages are read: one row per folder or file, parents first.
change_listings = Table(
    "change_listings",
    metadata,
    Column("token", Text, primary_key=True),
    Column("pos", Integer, primary_key=True),
    Column("owner_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("entry", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)

# Content removed from the store (revision 0011), by fingerprint, and when: a small file stored with one
# PutObject before its row is recorded checks here, under the content lock, that no removal ran between.
content_drops = Table(
    "content_drops",
    metadata,
    Column("fingerprint", Text, primary_key=True),
    Column("dropped_at", Text, nullable=False),
)

# Thumbnails (revision 0012): one row per content that should have one, the queue of those to make
# (gateway/core/thumbnails.py). state: queued, made or none; the lease is a worker's claim on a queued row.
thumbnails = Table(
    "thumbnails",
    metadata,
    Column("fingerprint", Text, primary_key=True),
    Column("source_size", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("queued_at", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_token", Text),
    Column("lease_expires_at", Text),  # with a token: the claim's end; without: not to be tried before
    Column("done_at", Text),
    Column("reason", Text),  # why there is none
)
