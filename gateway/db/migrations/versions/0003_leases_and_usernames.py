"""Several gateways: a lease on the upload being settled, and usernames unique on both engines.

``lease_token``/``lease_expires_at``: the gateway settling an upload (completing,
resuming, abandoning, deleting it) claims its row with a conditional UPDATE and
lets go afterwards; a lease left by a gateway that died expires. Usernames are
unique without regard to case through lower(username), which both SQLite and
PostgreSQL index (SQLite's NOCASE column stays as it was).

Revision ID: 0003
Revises: 0002
Create Date: the gateway redesign (PostgreSQL as a second engine)
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("lease_token", sa.Text()))
    op.add_column("files", sa.Column("lease_expires_at", sa.Text()))
    op.create_index("users_by_lower_username", "users", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index("users_by_lower_username", table_name="users")
    op.drop_column("files", "lease_expires_at")
    op.drop_column("files", "lease_token")
