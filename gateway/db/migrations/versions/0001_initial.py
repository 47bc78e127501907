"""Users, the files they own, the chunks of each file and who a file is shared with.

Revision ID: 0001
Revises:
Create Date: the first release (was the SQL file 0001_initial.sql, PRAGMA user_version 1)
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite: an INTEGER PRIMARY KEY is the rowid; PostgreSQL: a 64-bit identity.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "users",
        sa.Column("id", ID, primary_key=True),
        # Unique without regard to case: NOCASE on SQLite here; revision 0003 adds lower(username) on both.
        sa.Column("username", sa.Text(collation="NOCASE") if sqlite else sa.Text(), nullable=False,
                  unique=sqlite),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
    )
    # One row per upload a user made. `seq` orders listings and pages them; `id` is the opaque public file id.
    op.create_table(
        "files",
        sa.Column("seq", ID, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text(), nullable=False, unique=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("file_type", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("chunk_size", sa.BigInteger(), nullable=False),
        sa.Column("total_chunks", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("failure_reason", sa.Text()),
        # The store's multipart upload while the file is uploading, NULL afterwards.
        sa.Column("upload_id", sa.Text(), unique=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("completed_at", sa.Text()),
        sa.CheckConstraint("status IN ('uploading', 'uploaded', 'failed')"),
        sqlite_autoincrement=True,
    )
    op.create_index("files_by_owner", "files", ["owner_id", sa.text("seq DESC")])
    op.create_index("files_by_owner_fingerprint", "files", ["owner_id", "fingerprint"])
    op.create_index("files_by_fingerprint", "files", ["fingerprint", "status"])
    op.create_index(
        "files_uploading", "files", ["updated_at"],
        sqlite_where=sa.text("status = 'uploading'"), postgresql_where=sa.text("status = 'uploading'"),
    )
    op.create_table(
        "chunks",
        sa.Column("file_id", sa.Text(), sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("etag", sa.Text()),
        sa.PrimaryKeyConstraint("file_id", "idx"),
        sa.CheckConstraint("status IN ('pending', 'uploaded')"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "shares",
        sa.Column("file_id", sa.Text(), sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("file_id", "user_id"),
        sqlite_with_rowid=False,
    )
    op.create_index("shares_by_user", "shares", ["user_id", "file_id"])


def downgrade() -> None:
    for table in ("shares", "chunks", "files", "users"):
        op.drop_table(table)
