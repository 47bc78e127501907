"""Upload sessions in a table of their own: ``files`` keeps what a file is, ``uploads`` how it is arriving.

Before, ``files`` mixed a file's identity and content with the state of its
upload (the store's multipart upload, the settling lease, the part-event mark,
the reconciler's last look). Those move to ``uploads``, one row per upload in
progress, keyed by the file id it will have (gateway/core/uploads.py), with
where the file is headed: the folder (``parent_id``, ``root`` for the root:
the tree arrives in revision 0008), the name and its comparison key
(protocol/paths.py's ``name_key``), the ``mode`` and the file it ``replaces``.
Resuming looks for the same content headed for the same place, no longer for
the same file name alone.

Every ``uploading`` file gets its session with the values it had; the columns
leave ``files``. SQLite cannot drop a column with a UNIQUE constraint without
rebuilding the table (and rebuilding ``files`` would cascade into the tables
that reference it), so there the column stays, emptied and renamed
``retired_upload_id``: a query that still asks for ``files.upload_id`` fails on
both engines alike instead of reading NULL on one.

Revision ID: 0007
Revises: 0006
Create Date: issue 22 (the tree): data model first
"""
import sqlalchemy as sa
from alembic import op

from protocol.paths import name_key

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("file_id", sa.Text(), sa.ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("upload_id", sa.Text(), unique=True),  # the store's multipart upload
        sa.Column("parent_id", sa.Text(), nullable=False, server_default="root"),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_key", sa.Text(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False, server_default="add"),
        sa.Column("replaces", sa.Text()),
        sa.Column("active_at", sa.Text(), nullable=False),  # the last activity: quiet too long is abandoned
        sa.Column("lease_token", sa.Text()),
        sa.Column("lease_expires_at", sa.Text()),
        sa.Column("parts_marked_at", sa.Text()),
        sa.Column("checked_at", sa.Text()),
        sa.CheckConstraint("mode IN ('add', 'overwrite', 'update')"),
    )
    op.create_index("uploads_by_owner", "uploads", ["owner_id", "parent_id", "name_key"])
    op.create_index("uploads_by_activity", "uploads", ["active_at"])
    op.create_index(
        "uploads_parts_marked", "uploads", ["parts_marked_at"],
        sqlite_where=sa.text("parts_marked_at IS NOT NULL"), postgresql_where=sa.text("parts_marked_at IS NOT NULL"),
    )
    bind = op.get_bind()
    uploading = bind.execute(sa.text(
        "SELECT id, owner_id, file_name, upload_id, updated_at, lease_token, lease_expires_at, parts_marked_at,"
        " checked_at FROM files WHERE status = 'uploading'"
    )).mappings().all()
    if uploading:
        bind.execute(
            sa.text(
                "INSERT INTO uploads (file_id, owner_id, upload_id, parent_id, name, name_key, mode, active_at,"
                " lease_token, lease_expires_at, parts_marked_at, checked_at)"
                " VALUES (:id, :owner_id, :upload_id, 'root', :file_name, :name_key, 'add', :updated_at,"
                " :lease_token, :lease_expires_at, :parts_marked_at, :checked_at)"
            ),
            [{**row, "name_key": name_key(row["file_name"])} for row in uploading],
        )
    op.drop_index("files_uploading", table_name="files")
    op.drop_index("files_parts_marked", table_name="files")
    for column in ("lease_token", "lease_expires_at", "parts_marked_at", "checked_at"):
        op.drop_column("files", column)
    if bind.dialect.name == "sqlite":
        bind.execute(sa.text("UPDATE files SET upload_id = NULL"))
        op.alter_column("files", "upload_id", new_column_name="retired_upload_id")
    else:
        op.drop_column("files", "upload_id")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.alter_column("files", "retired_upload_id", new_column_name="upload_id")
    else:
        op.add_column("files", sa.Column("upload_id", sa.Text(), unique=True))
    for column in ("lease_token", "lease_expires_at", "parts_marked_at", "checked_at"):
        op.add_column("files", sa.Column(column, sa.Text()))
    for column in ("upload_id", "lease_token", "lease_expires_at", "parts_marked_at", "checked_at"):
        bind.execute(sa.text(
            f"UPDATE files SET {column} = (SELECT uploads.{column} FROM uploads WHERE uploads.file_id = files.id)"
        ))
    bind.execute(sa.text(
        "UPDATE files SET updated_at = (SELECT active_at FROM uploads WHERE uploads.file_id = files.id)"
        " WHERE id IN (SELECT file_id FROM uploads)"
    ))
    op.create_index(
        "files_parts_marked", "files", ["parts_marked_at"],
        sqlite_where=sa.text("parts_marked_at IS NOT NULL"), postgresql_where=sa.text("parts_marked_at IS NOT NULL"),
    )
    op.create_index(
        "files_uploading", "files", ["updated_at"],
        sqlite_where=sa.text("status = 'uploading'"), postgresql_where=sa.text("status = 'uploading'"),
    )
    op.drop_table("uploads")
