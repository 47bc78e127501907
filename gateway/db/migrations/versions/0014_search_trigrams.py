"""Search without reading every name, on PostgreSQL: a trigram index on the live names (pg_trgm).

``GET /dropbox/v1/search`` looks for ``name_key LIKE '%fragment%'`` among the owner's live entries
(gateway/db/nodes.py); no B-tree index serves a pattern with a leading ``%``, so it read every name
of the owner's tree. pg_trgm's GIN index does serve it (for fragments of three characters or more):
PostgreSQL reads the entries holding the fragment's trigrams and checks only those. The extension
is one PostgreSQL ships (contrib) and trusts: a database owner may create it. Where it cannot be
created (not installed, or a role without the right), the revision leaves search as it was, reading
every name, and says so in the log: nothing else depends on the index.

SQLite has no such index here: its search reads the owner's names (an FTS5 trigram table kept beside
``nodes`` would be the way, at the cost of a second write per change).

Revision ID: 0014
Revises: 0013
Create Date: issue 22 (search over 100,000 names)
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():  # a refusal leaves the rest of the migration's transaction usable
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning("pg_trgm is not available (%s): search reads every name of a tree", exc.orig)
        return
    # fastupdate off: a new name goes into the index itself, not a pending list that every search would read
    # whole (and that makes the planner rate the index too dear to use) until a vacuum merged it.
    op.execute("CREATE INDEX IF NOT EXISTS nodes_name_trigrams ON nodes USING gin (name_key gin_trgm_ops)"
               " WITH (fastupdate = off) WHERE deleted_at IS NULL AND replaced_by IS NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS nodes_name_trigrams")
