"""Accounts an operator manages: disabled users, invitations for invitation-only sign-up.

``users.disabled_at``: when an operator disabled the user (``python -m
gateway.admin disable``); NULL: enabled. A disabled user cannot log in, and
disabling also moves ``token_generation`` on, ending every token issued before.

``invitations``: one row per invitation code (``GATEWAY_SIGNUP=invite``), by
the code's SHA-256 only, never the code: a copy of the database signs nobody
up. ``used_by`` is the user it signed up (the same transaction as the user's
row), ``expires_at`` when it stops working unused.

Revision ID: 0009
Revises: 0008
Create Date: issue 24 (sign-up modes and an admin command)
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("users", sa.Column("disabled_at", sa.Text()))
    op.create_table(
        "invitations",
        sa.Column("code_hash", sa.Text(), primary_key=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Text(), nullable=False),
        sa.Column("used_at", sa.Text()),
        sa.Column("used_by", ID, sa.ForeignKey("users.id", ondelete="SET NULL")),
    )


def downgrade() -> None:
    op.drop_table("invitations")
    op.drop_column("users", "disabled_at")
