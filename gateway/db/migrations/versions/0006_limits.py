"""Limits: a per-user quota override, the part-event mark, the reconciler's last check.

``users.quota_bytes``: this user's storage quota in bytes, overriding
``GATEWAY_USER_QUOTA_BYTES``; NULL: the gateway's setting; 0: unlimited.

``files.parts_marked_at``: when a store part event first asked for this
upload's part list to be read again since it was last read (NULL: nobody
asked). Every gateway reads the marks (gateway/core/events.py), so a burst of
part events costs one ListParts, whichever gateway the events reached.

``files.checked_at``: when the reconciler last asked the store about this
upload; it looks again only after new activity or ``GATEWAY_RECONCILE_RECHECK``.

Revision ID: 0006
Revises: 0005
Create Date: issue 17 (forged events, limits per user)
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("quota_bytes", sa.BigInteger()))
    op.add_column("files", sa.Column("parts_marked_at", sa.Text()))
    op.add_column("files", sa.Column("checked_at", sa.Text()))
    op.create_index(
        "files_parts_marked", "files", ["parts_marked_at"],
        sqlite_where=sa.text("parts_marked_at IS NOT NULL"), postgresql_where=sa.text("parts_marked_at IS NOT NULL"),
    )
    # A user's uploads in progress and the bytes they hold, counted at every upload start.
    op.create_index("files_by_owner_status", "files", ["owner_id", "status"])


def downgrade() -> None:
    op.drop_index("files_by_owner_status", table_name="files")
    op.drop_index("files_parts_marked", table_name="files")
    op.drop_column("files", "checked_at")
    op.drop_column("files", "parts_marked_at")
    op.drop_column("users", "quota_bytes")
