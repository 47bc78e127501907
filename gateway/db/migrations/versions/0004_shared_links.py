"""Shared links.

``links``: one row per shared link of a file. The token itself is never
stored: ``token_hash`` is its SHA-256 (how a visitor's token is looked up), so
the database alone gives no working link (gateway/core/links.py says how the
owner's listing still shows each link's URL). A revoked link keeps its row
with ``revoked_at`` set; deleting the file deletes its links (ON DELETE
CASCADE).

Wrong link passwords are counted in the ``throttle`` table of revision 0005
(gateway/core/throttle.py).

Revision ID: 0004
Revises: 0003
Create Date: shared links (contract v1.1)
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("file_id", sa.Text(), sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text()),
        sa.Column("expires_at", sa.Text()),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.Text()),
        sa.Column("download_count", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("links_by_file", "links", ["file_id", "created_at"])


def downgrade() -> None:
    op.drop_index("links_by_file", table_name="links")
    op.drop_table("links")
