"""Accounts and sessions: failure counters for throttling, revoked access tokens, a token generation per user.

``throttle``: one row per throttled key (a username, a client address, ...):
the failures counted in its current window, when that window ends, and until
when the key is blocked (gateway/core/throttle.py). Counting in the database
makes the limits hold across every gateway process.

``revoked_tokens``: the ``jti`` of each access token ended by a log-out, kept
until the token would have expired anyway.

``users.token_generation``: carried in every access token as ``gen``; a
password change increments it, so every token issued before stops working.

Revision ID: 0005
Revises: 0004
Create Date: issue 14 (login throttling, log-out, password change)
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "throttle",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_ends_at", sa.Text(), nullable=False),
        sa.Column("blocked_until", sa.Text()),
    )
    op.create_index("throttle_by_window_end", "throttle", ["window_ends_at"])
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.Text(), primary_key=True),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("expires_at", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.Text(), nullable=False),
    )
    op.create_index("revoked_tokens_by_expiry", "revoked_tokens", ["expires_at"])
    op.create_index("revoked_tokens_by_user", "revoked_tokens", ["user_id", "expires_at"])
    op.add_column("users", sa.Column("token_generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("users", "token_generation")
    op.drop_index("revoked_tokens_by_user", table_name="revoked_tokens")
    op.drop_index("revoked_tokens_by_expiry", table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
    op.drop_index("throttle_by_window_end", table_name="throttle")
    op.drop_table("throttle")
