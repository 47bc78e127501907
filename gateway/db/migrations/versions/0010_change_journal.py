"""The change journal (contract v1.2, Changes): one row per change to a user's tree, and listings.

``changes``: written by gateway/core/namespace.py in the transaction that makes the change (a change
that rolls back leaves no row). ``seq`` is global and increasing; every change to one user's tree takes
the lock on the user's row first, so one user's rows are numbered in the order they committed (a
reader never sees seq 11 of a user before seq 10 of the same user). ``kind``: created, moved, replaced,
trashed, restored, purged; ``path``: the path the node had (a move's old path, a deletion's path).
Rows older than ``GATEWAY_CHANGE_RETENTION`` are pruned, and ``users.changes_pruned_through`` keeps the
highest seq pruned of each user's: a cursor below it is answered 410 ``cursor_reset`` (an idle user's
cursor stays good however old it is).

``change_listings``: a listing of a whole tree without a cursor, as it was at one moment, kept while
its pages are read (one row per folder or file, in the order served: parents first).

Revision ID: 0010
Revises: 0009
Create Date: issue 23 (the change journal)
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # The highest seq of the user's pruned rows: a cursor below it reaches back past the journal.
    op.add_column("users", sa.Column("changes_pruned_through", ID, nullable=False, server_default="0"))
    op.create_table(
        "changes",
        sa.Column("seq", ID, primary_key=True, autoincrement=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("node_kind", sa.Text(), nullable=False),
        sa.Column("path", sa.Text()),
        sa.Column("recorded_at", sa.Text(), nullable=False),
    )
    op.create_index("changes_by_owner", "changes", ["owner_id", "seq"])
    op.create_table(
        "change_listings",
        sa.Column("token", sa.Text(), primary_key=True),
        sa.Column("pos", sa.Integer(), primary_key=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),  # the folder or file as it was (JSON)
        sa.Column("created_at", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("change_listings")
    op.drop_index("changes_by_owner", table_name="changes")
    op.drop_table("changes")
    op.drop_column("users", "changes_pruned_through")
