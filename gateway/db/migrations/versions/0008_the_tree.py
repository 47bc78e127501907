"""The tree: one per user, folders and files as nodes; every v1.1 file moves into its owner's root.

``nodes``: one row per folder and per file that has taken its place in a tree
(an upload in progress has none yet: gateway/db/uploads.py says where it is
headed). A file's node has the file's id (``files.id``). ``parent_id`` is the
folder holding it, ``root`` for the owner's root (which has no row). ``name``
is kept as given; ``name_key`` (protocol/paths.py: NFC, then case-folded) is
unique among the *live* entries of a folder, by a partial unique index on both
engines, so two gateways creating the same name at once cannot both win.

Versions and the trash are states of the same rows: ``replaced_by`` (the file
that replaced this one, and ``replaced_at``), ``deleted_at`` with
``deleted_path`` (the path it had) and ``trashed_with`` (the trash entry it
went with: its own id for what was deleted, the folder's for what the folder
held). Only rows with neither are live.

Every uploaded v1.1 file lands in its owner's root under its name; when a name
is taken (compared by ``name_key``), the later files (by ``files.seq``) take
``name (1).ext``, ``name (2).ext``, ... (protocol/paths.py's free_names); ``files.file_name``
keeps the name it was uploaded with (a placed file is known by its node's name).

Revision ID: 0008
Revises: 0007
Create Date: issue 22 (the tree)
"""
import sqlalchemy as sa
from alembic import op

from protocol.paths import free_names, name_key

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = "deleted_at IS NULL AND replaced_by IS NULL"
BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("parent_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("modified_at", sa.Text(), nullable=False),
        sa.Column("replaced_by", sa.Text()),
        sa.Column("replaced_at", sa.Text()),
        sa.Column("deleted_at", sa.Text()),
        sa.Column("deleted_path", sa.Text()),
        sa.Column("trashed_with", sa.Text()),
        sa.CheckConstraint("kind IN ('folder', 'file')"),
    )
    # One live name per folder, whatever its case; and the folder listing's order (folders, then files, by name).
    op.create_index("nodes_live_names", "nodes", ["owner_id", "parent_id", "name_key"], unique=True,
                    sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))
    op.create_index("nodes_entries", "nodes", ["owner_id", "parent_id", "kind", "name_key", "id"],
                    sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))
    op.create_index("nodes_by_parent", "nodes", ["parent_id"])
    op.create_index("nodes_versions", "nodes", ["replaced_by"], sqlite_where=sa.text("replaced_by IS NOT NULL"),
                    postgresql_where=sa.text("replaced_by IS NOT NULL"))
    op.create_index("nodes_trash", "nodes", ["owner_id", "deleted_at", "id"],
                    sqlite_where=sa.text("trashed_with = id"), postgresql_where=sa.text("trashed_with = id"))
    _files_into_roots(op.get_bind())


def _files_into_roots(bind) -> None:
    """Each uploaded file into its owner's root, oldest first; a taken name gets the next free one."""
    rows = bind.execute(sa.text(
        "SELECT id, owner_id, file_name, created_at, completed_at FROM files WHERE status = 'uploaded'"
        " ORDER BY owner_id, seq"
    )).mappings().all()
    taken: dict[int, set[str]] = {}
    nodes = []
    for row in rows:
        keys = taken.setdefault(row["owner_id"], set())
        name = next(candidate for candidate in free_names(row["file_name"]) if name_key(candidate) not in keys)
        keys.add(name_key(name))
        nodes.append({"id": row["id"], "owner_id": row["owner_id"], "name": name, "name_key": name_key(name),
                      "created_at": row["created_at"], "modified_at": row["completed_at"] or row["created_at"]})
    insert = sa.text(
        "INSERT INTO nodes (id, owner_id, kind, parent_id, name, name_key, created_at, modified_at)"
        " VALUES (:id, :owner_id, 'file', 'root', :name, :name_key, :created_at, :modified_at)"
    )
    for start in range(0, len(nodes), BATCH):
        bind.execute(insert, nodes[start:start + BATCH])


def downgrade() -> None:
    op.drop_table("nodes")
