"""Thumbnails: one row per content (fingerprint) that should have one, and the queue of those to make.

A row is ``queued`` from the transaction that makes a file of that content ``uploaded`` (an image or
a PDF, by type or name) until a worker has made its thumbnail (``made``) or given up on it (``none``:
not readable, a decompression bomb, too large). Workers in every gateway claim rows with a lease
(``lease_token``, ``lease_expires_at``) in one UPDATE, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
``lease_expires_at`` on a row without a token is when it may be tried again after a store failure.
Existing uploaded images and PDFs are queued here, once per content.

Revision ID: 0012
Revises: 0011
Create Date: issue 25 (thumbnails)
"""
import datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# As gateway/core/thumbnails.py decided at this revision (a migration does not follow later code).
TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/heic", "image/heif", "application/pdf")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif", ".pdf")


def upgrade() -> None:
    op.create_table(
        "thumbnails",
        sa.Column("fingerprint", sa.Text(), primary_key=True),
        sa.Column("source_size", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("queued_at", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_token", sa.Text()),
        sa.Column("lease_expires_at", sa.Text()),
        sa.Column("done_at", sa.Text()),
        sa.Column("reason", sa.Text()),
    )
    op.create_index("thumbnails_queue", "thumbnails", ["state", "queued_at"])
    files = sa.table("files", sa.column("fingerprint"), sa.column("file_size"), sa.column("file_type"),
                     sa.column("file_name"), sa.column("status"))
    kind = sa.or_(sa.func.lower(files.c.file_type).in_(TYPES),
                  *(sa.func.lower(files.c.file_name).like(f"%{ext}") for ext in EXTENSIONS))
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    wanted = (
        sa.select(files.c.fingerprint, sa.func.max(files.c.file_size), sa.literal("queued"), sa.literal(now))
        .where(files.c.status == "uploaded", kind)
        .group_by(files.c.fingerprint)
    )
    thumbnails = sa.table("thumbnails", sa.column("fingerprint"), sa.column("source_size"), sa.column("state"),
                          sa.column("queued_at"))
    op.execute(thumbnails.insert().from_select(["fingerprint", "source_size", "state", "queued_at"], wanted))


def downgrade() -> None:
    op.drop_index("thumbnails_queue", table_name="thumbnails")
    op.drop_table("thumbnails")
