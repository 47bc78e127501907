"""Each user's usage kept as counters on their row, instead of summed over their files at every check.

``users.used_bytes``: the sizes of the user's ``uploading`` and ``uploaded`` files (live, versions and
the trash alike: contract v1.1 and v1.2 count them all); ``users.file_count``: how many file rows the
user has, failed ones too (what ``GATEWAY_MAX_FILES_PER_USER`` caps). gateway/db/files.py changes them
in the transaction of every change that adds, frees or deletes a file row (``used_bytes = used_bytes
+ :delta``, so two gateways committing at once add up instead of one overwriting the other); this
revision fills them from the files there are.

Revision ID: 0013
Revises: 0012
Create Date: issue 22 (per-user usage without a scan of the user's files)
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("used_bytes", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("users", sa.Column("file_count", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE users SET"
        " used_bytes = (SELECT coalesce(sum(files.file_size), 0) FROM files"
        "               WHERE files.owner_id = users.id AND files.status IN ('uploading', 'uploaded')),"
        " file_count = (SELECT count(*) FROM files WHERE files.owner_id = users.id)"
    )


def downgrade() -> None:
    op.drop_column("users", "file_count")
    op.drop_column("users", "used_bytes")
