"""Files shared with a user are listed newest share first, paged by (created_at, file_id).

Revision ID: 0002
Revises: 0001
Create Date: was the SQL file 0002_shares_newest_first.sql (PRAGMA user_version 2)
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("shares_by_user_newest", "shares", ["user_id", sa.text("created_at DESC"), sa.text("file_id DESC")])
    op.drop_index("shares_by_user", table_name="shares")


def downgrade() -> None:
    op.create_index("shares_by_user", "shares", ["user_id", "file_id"])
    op.drop_index("shares_by_user_newest", table_name="shares")
