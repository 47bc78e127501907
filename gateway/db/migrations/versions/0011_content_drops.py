"""Content the gateway removed from the store, and when: what a small file's upload checks before it is recorded.

A small file sent inline is stored with one PutObject before the transaction that records it
(gateway/core/uploads.py): the bytes are in the store, verified, before the file is ``uploaded``.
A removal of the same content (gateway/core/deletion.py: its last file deleted) that ran between
that PutObject and that transaction would leave the new file without bytes. Each removal records
its fingerprint here, under the content lock and in the transaction that removes the object; the
upload's transaction, under the same lock, finds the record and stores the bytes again if they are
gone. Housekeeping forgets records after a day (an upload's PutObject and its transaction are
seconds apart, never a day).

Revision ID: 0011
Revises: 0010
Create Date: issue 26 (a lean control path)
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_drops",
        sa.Column("fingerprint", sa.Text(), primary_key=True),
        sa.Column("dropped_at", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("content_drops")
