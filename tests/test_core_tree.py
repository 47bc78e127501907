"""The tree in the core, on both engines: races between gateways, paging, the trash, versions, retention.

Each "gateway" here is a core with a database connection pool of its own on the
same database, as two gateway processes have: on PostgreSQL their transactions
really run at once, so these tests exercise the row lock on the owner
(gateway/core/namespace.py) and the partial unique index on names.
"""
from __future__ import annotations

import asyncio
import os
import random

import pytest

from gateway.core.errors import Cycle, FileNotFound, NameTaken
from gateway.db.nodes import FILE, FOLDER
from protocol.paths import name_key
from gateway.core.uploads import Target
from tests.core_fixtures import claim_for, cores_on_one_database, new_user, send_chunks, stored, uploaded

pytestmark = pytest.mark.every_engine  # the core's transactions and recursive queries, on both engines


@pytest.fixture
async def gateways(database_url, database_path, memory_store, clock):
    """Two cores on one database, each with its own connection pool (two gateway processes)."""
    async with cores_on_one_database(2, database_url, database_path, memory_store, clock) as cores:
        yield cores


async def live_names(core, owner: int, folder: str = "root") -> list[str]:
    page = await core.tree.entries(owner, folder, 1000, None)
    return [entry.node["name"] for entry in page.entries]


async def test_two_moves_that_would_make_a_cycle_race_and_exactly_one_wins(gateways):
    first, second = gateways
    alice = await new_user(first, "alice")
    for _ in range(8):
        a = await first.namespace.make_folder(alice, "root", "a", autorename=True)
        b = await first.namespace.make_folder(alice, "root", "b", autorename=True)
        outcomes = await asyncio.gather(
            first.namespace.move(alice, a["id"], FOLDER, parent_id=b["id"]),
            second.namespace.move(alice, b["id"], FOLDER, parent_id=a["id"]),
            return_exceptions=True,
        )
        assert sorted(type(o).__name__ for o in outcomes) == ["Cycle", "dict"], outcomes
        paths = await first.namespace.paths_of([a["id"], b["id"]])
        outer, inner = sorted((paths[a["id"]], paths[b["id"]]), key=len)
        assert outer.count("/") == 1 and inner.startswith(outer + "/") and inner.count("/") == 2  # one inside the other


async def test_two_gateways_creating_one_name_at_once_never_make_a_duplicate(gateways):
    first, second = gateways
    alice = await new_user(first, "alice")
    for round_ in range(6):
        name = f"Shared {round_}"
        outcomes = await asyncio.gather(
            first.namespace.make_folder(alice, "root", name),
            second.namespace.make_folder(alice, "root", name.upper()),
            return_exceptions=True,
        )
        assert sorted(type(o).__name__ for o in outcomes) == ["NameTaken", "dict"], outcomes
        both = await asyncio.gather(
            first.namespace.make_folder(alice, "root", name, autorename=True),
            second.namespace.make_folder(alice, "root", name, autorename=True),
        )
        assert len({name_key(node["name"]) for node in both}) == 2
    keys = [name_key(name) for name in await live_names(first, alice)]
    assert len(keys) == len(set(keys)) == 18


async def test_uploads_committing_the_same_name_at_once_take_different_names(gateways, memory_store):
    first, second = gateways
    alice = await new_user(first, "alice")
    ids = await asyncio.gather(*(
        uploaded(core, memory_store, alice, os.urandom(1000 + n), "same.txt") for n, core in enumerate(gateways * 3)
    ))
    assert len(set(ids)) == 6
    assert sorted(await live_names(first, alice)) == ["same (1).txt", "same (2).txt", "same (3).txt", "same (4).txt",
                                                      "same (5).txt", "same.txt"]


async def test_entries_page_in_the_contracts_order_whatever_the_page_size(core, memory_store):
    alice = await new_user(core, "alice")
    rng = random.Random(22)
    folder = await core.namespace.make_folder(alice, "root", "box")
    names = set()
    while len(names) < 40:
        names.add(rng.choice(["a", "B", "é", "E", "ß", "z", "Zz", "ä"]) + rng.choice(["", "1", "x", "Ä"]) + str(rng.randrange(9)))
    keys_seen, kept = set(), []
    for name in sorted(names):
        if name_key(name) not in keys_seen:
            keys_seen.add(name_key(name))
            kept.append(name)
    folders, files = kept[::2], kept[1::2]
    for name in folders:
        await core.namespace.make_folder(alice, folder["id"], name)
    for n, name in enumerate(files):
        await uploaded(core, memory_store, alice, b"%d" % n, name)
        moved = (await core.tree.metadata(alice, "/" + name)).node
        await core.namespace.move(alice, moved["id"], FILE, parent_id=folder["id"])
    expected = [(FOLDER, name) for name in sorted(folders, key=lambda n: (name_key(n), n))] + \
               [(FILE, name) for name in sorted(files, key=lambda n: (name_key(n), n))]
    for size in (1, 3, 7, len(kept), 1000):
        seen, cursor = [], None
        while True:
            page = await core.tree.entries(alice, folder["id"], size, cursor)
            assert len(page.entries) <= size
            seen += [(entry.node["kind"], entry.node["name"]) for entry in page.entries]
            cursor = page.cursor
            if cursor is None:
                break
        assert [kind for kind, _ in seen] == [kind for kind, _ in expected], size
        assert [name_key(name) for _, name in seen] == [name_key(name) for _, name in expected], size


async def test_a_folder_goes_to_the_trash_as_one_entry_and_comes_back_whole(core, memory_store):
    alice, bob = await new_user(core, "alice"), await new_user(core, "bob")
    top, _ = await core.namespace.make_path(alice, "/top/mid/low")
    data = os.urandom(3000)
    inner = await uploaded(core, memory_store, alice, data, "inner.bin")
    await core.namespace.move(alice, inner, FILE, parent_id=top["id"])
    await core.sharing.share(alice, inner, ["bob"])
    folder = await core.namespace.resolve(alice, "/top")
    await core.tree.trash(alice, folder["id"], FOLDER)
    entries, _ = await core.tree.trash_page(alice, 10, None)
    assert [(e.node["id"], e.path) for e in entries] == [(folder["id"], "/top")]
    with pytest.raises(FileNotFound):
        await core.files.readable(bob, inner)
    with pytest.raises(FileNotFound):
        await core.files.readable(alice, inner)
    restored = await core.tree.restore(alice, folder["id"])
    assert restored.path == "/top" and restored.node["id"] == folder["id"]
    row, _ = await core.files.readable(alice, inner)
    assert row["path"] == "/top/mid/low/inner.bin"
    with pytest.raises(FileNotFound):
        await core.files.readable(bob, inner)  # the shares ended with the trash

    await core.tree.trash(alice, folder["id"], FOLDER)
    await core.tree.delete_for_good(alice, folder["id"])
    assert stored(memory_store, claim_for(data).fingerprint) is None
    assert await core.db.fetchval("SELECT count(*) FROM nodes") == 0
    assert await core.db.fetchval("SELECT count(*) FROM files") == 0


async def test_versions_chain_restore_and_retention(core, memory_store, clock):
    alice = await new_user(core, "alice")
    contents = [os.urandom(500 + n) for n in range(3)]
    ids = []
    for data in contents:
        file_id, _ = await core.uploads.start(alice, claim_for(data, "doc.txt"), Target(mode="overwrite"))
        if (await core.files.readable(alice, file_id))[0]["status"] == "uploading":
            await send_chunks(core, memory_store, alice, file_id, data)
            await core.uploads.finish(alice, file_id)
        ids.append(file_id)
        clock.advance(60)
    versions = await core.tree.versions(alice, ids[2])
    assert [row["id"] for row in versions] == [ids[1], ids[0]]
    assert [row["replaced_by"] for row in versions] == [ids[2], ids[1]]
    restored = await core.tree.restore_version(alice, ids[0])
    assert restored["path"] == "/doc.txt" and restored["fingerprint"] == claim_for(contents[0]).fingerprint
    assert [row["id"] for row in await core.tree.versions(alice, restored["id"])] == [ids[2], ids[1], ids[0]]
    assert (await core.limits.usage(alice))["used_bytes"] == sum(map(len, contents)) + len(contents[0])

    # Versions older than version_retention are deleted for good by the background round; the current file stays.
    clock.advance(core.config.version_retention + 1)
    counts = await core.housekeeping()
    assert counts["purged_versions"] == 3
    assert await core.tree.versions(alice, restored["id"]) == []
    assert (await core.files.readable(alice, restored["id"]))[0]["status"] == "uploaded"
    assert stored(memory_store, claim_for(contents[1]).fingerprint) is None  # nothing refers to it any more
    assert stored(memory_store, claim_for(contents[0]).fingerprint) == contents[0]  # the restored file does


async def test_the_trash_is_emptied_after_trash_retention(core, memory_store, clock):
    alice = await new_user(core, "alice")
    file_id = await uploaded(core, memory_store, alice, b"old news", "old.txt")
    await core.tree.delete_file(alice, file_id)
    clock.advance(core.config.trash_retention - 10)
    assert (await core.housekeeping())["purged_trash"] == 0
    clock.advance(20)
    assert (await core.housekeeping())["purged_trash"] == 1
    assert await core.tree.trash_page(alice, 10, None) == ([], None)
    assert (await core.limits.usage(alice))["used_bytes"] == 0


async def test_a_copy_of_a_file_shared_with_you_is_yours_and_counts(core, memory_store):
    alice, bob = await new_user(core, "alice"), await new_user(core, "bob")
    file_id = await uploaded(core, memory_store, alice, b"shared", "s.txt")
    with pytest.raises(FileNotFound):
        await core.tree.copy(bob, file_id, parent_id=None, name=None, autorename=False)
    await core.sharing.share(alice, file_id, ["bob"])
    copy = await core.tree.copy(bob, file_id, parent_id=None, name=None, autorename=False)
    assert copy.path == "/s.txt" and copy.file is not None and copy.file["owner_id"] == bob
    with pytest.raises(NameTaken):
        await core.tree.copy(bob, file_id, parent_id=None, name="S.TXT", autorename=False)
    assert (await core.limits.usage(bob))["used_bytes"] == len(b"shared")


async def test_moving_a_folder_below_itself_is_a_cycle(core):
    alice = await new_user(core, "alice")
    low, _ = await core.namespace.make_path(alice, "/a/b/c")
    top = await core.namespace.resolve(alice, "/a")
    with pytest.raises(Cycle):
        await core.namespace.move(alice, top["id"], FOLDER, parent_id=low["id"])


async def test_a_page_of_entries_starts_at_the_cursor_in_the_index_order(core):
    """The keyset: the nodes_entries index read from the cursor on, already in order (no sort), on both
    engines. With sorts ruled out, a sort in PostgreSQL's plan would mean no index gives that order."""
    from gateway.db.nodes import entries_query

    alice = await new_user(core, "alice")
    for n in range(20):
        await core.namespace.make_folder(alice, "root", f"folder {n}")
    query = entries_query(alice, "root", FOLDER, ("folder 1", "f" * 32), 10)
    async with core.db.read() as conn:
        statement = str(query.compile(conn.sync_connection, compile_kwargs={"literal_binds": True}))
        if core.db.dialect == "sqlite":
            plan = "\n".join(row[-1] for row in (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement)).all())
            assert "USING INDEX nodes_entries" in plan and "TEMP B-TREE" not in plan, plan
        else:
            await conn.exec_driver_sql("SET LOCAL enable_sort = off")
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(row[0] for row in (await conn.exec_driver_sql("EXPLAIN " + statement)).all())
            assert "Index Scan using nodes_entries" in plan and "Sort" not in plan, plan


async def test_search_reads_the_trigram_index_on_postgresql_not_every_name(core):
    """Revision 0014: on PostgreSQL a search for a fragment (3 characters or more) is served by the
    nodes_name_trigrams index (pg_trgm), not a read of all the owner's names; the answer is the same
    on both engines (SQLite reads the owner's names)."""
    from sqlalchemy import insert

    from gateway.db import tables
    from gateway.db.nodes import search_query

    alice = await new_user(core, "alice")
    now = "2026-01-01T00:00:00.000000Z"
    names = sorted(f"Photo {random.Random(n).getrandbits(40):010x}.jpg" for n in range(3000))
    rows = [{"id": f"{n:032x}", "owner_id": alice, "kind": FOLDER, "parent_id": "root", "name": name,
             "name_key": name_key(name), "created_at": now, "modified_at": now} for n, name in enumerate(names)]
    async with core.db.transaction() as conn:
        await conn.execute(insert(tables.nodes), rows)
    wanted = names[1234][6:14].upper()  # eight hex digits of one name, in other case
    found = await core.tree.search(alice, wanted, 10)
    assert [entry.node["name"] for entry in found] == [name for name in names if name_key(wanted) in name_key(name)]
    assert names[1234] in [entry.node["name"] for entry in found]
    if core.db.dialect != "postgresql":
        return
    async with core.db.transaction() as conn:
        await conn.exec_driver_sql("ANALYZE nodes")
        # 3,000 rows fit a few pages, which PostgreSQL rather reads whole: ask which index it would take.
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        statement = str(search_query(alice, name_key(wanted), 10).compile(
            conn.sync_connection, compile_kwargs={"literal_binds": True}))
        plan = "\n".join(row[0] for row in (await conn.exec_driver_sql("EXPLAIN " + statement)).all())
    assert "nodes_name_trigrams" in plan, plan


async def check_tree(core, owner: int) -> None:
    """What must hold of a tree after any sequence of changes."""
    rows = await core.db.fetchall(
        "SELECT id, kind, parent_id, name_key, deleted_at, replaced_by, trashed_with FROM nodes WHERE owner_id = :o",
        {"o": owner})
    by_id = {row["id"]: row for row in rows}
    live = [row for row in rows if row["deleted_at"] is None and row["replaced_by"] is None]
    places = [(row["parent_id"], row["name_key"]) for row in live]
    assert len(places) == len(set(places)), "two live entries share a name in one folder"
    for row in live:
        seen, parent = set(), row["parent_id"]
        while parent != "root":  # up to the root, through live folders only, never round in a circle
            assert parent not in seen and parent in by_id, (row, parent)
            seen.add(parent)
            folder = by_id[parent]
            assert folder["kind"] == FOLDER and folder["deleted_at"] is None, (row, folder)
            parent = folder["parent_id"]
    for row in rows:
        if row["trashed_with"] is not None:
            assert by_id[row["trashed_with"]]["trashed_with"] == row["trashed_with"], row
    files = {r["id"] for r in await core.db.fetchall("SELECT id FROM files WHERE owner_id = :o", {"o": owner})}
    assert {row["id"] for row in rows if row["kind"] == FILE} <= files, "a file node without its file"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_changes_keep_the_tree_whole(core, memory_store, seed):
    """A seeded run of random changes (names drawn from a few, in several cases, so they collide), the
    tree's invariants checked after each: unique names per folder, no cycle, nothing live under a
    trashed folder, trash entries whole, every file node with its file."""
    from gateway.core.errors import CannotChangeRoot, NodeNotFound

    rng = random.Random(seed)
    alice = await new_user(core, "alice")
    names = ["a", "A", "b", "report.txt", "REPORT.TXT", "é", "e\u0301"]
    refused = (NameTaken, Cycle, NodeNotFound, CannotChangeRoot, FileNotFound)

    async def live(kind: str | None = None) -> list[dict]:
        query = "SELECT id, kind FROM nodes WHERE owner_id = :o AND deleted_at IS NULL AND replaced_by IS NULL"
        return [row for row in await core.db.fetchall(query, {"o": alice}) if kind in (None, row["kind"])]

    for _ in range(60):
        folders = ["root"] + [row["id"] for row in await live(FOLDER)]
        nodes = await live()
        trash, _ = await core.tree.trash_page(alice, 1000, None)
        action = rng.choice(["mkdir", "mkdir", "upload", "move", "rename", "trash", "restore", "purge"])
        try:
            if action == "mkdir":
                await core.namespace.make_folder(alice, rng.choice(folders), rng.choice(names), autorename=rng.random() < 0.5)
            elif action == "upload":
                target = Target(parent_id=rng.choice(folders), mode=rng.choice(["add", "overwrite"]))
                data = os.urandom(rng.randrange(1, 50))
                file_id, _ = await core.uploads.start(alice, claim_for(data, rng.choice(names)), target)
                if (await core.files.readable(alice, file_id))[0]["status"] == "uploading":
                    await send_chunks(core, memory_store, alice, file_id, data)
                    await core.uploads.finish(alice, file_id)
            elif action in ("move", "rename") and nodes:
                node = rng.choice(nodes)
                await core.tree.move(alice, node["id"], node["kind"], autorename=rng.random() < 0.5,
                                     name=rng.choice(names) if action == "rename" else None,
                                     parent_id=rng.choice(folders) if action == "move" else None)
            elif action == "trash" and nodes:
                node = rng.choice(nodes)
                await core.tree.trash(alice, node["id"], node["kind"])
            elif action in ("restore", "purge") and trash:
                entry = rng.choice(trash).node["id"]
                await (core.tree.restore(alice, entry) if action == "restore" else core.tree.delete_for_good(alice, entry))
        except refused:
            pass
        await check_tree(core, alice)


async def test_a_share_racing_the_trash_never_outlives_it(gateways, memory_store):
    """A share (or a link) made on one gateway while another trashes the file either lands first and is
    ended by the trash, or finds the file trashed: the trash never keeps a share (both engines)."""
    first, second = gateways
    alice, _ = await new_user(first, "alice"), await new_user(first, "bob")
    for n in range(6):
        file_id = await uploaded(first, memory_store, alice, os.urandom(100 + n), f"race-{n}.txt")
        await asyncio.gather(first.tree.trash(alice, file_id, FILE), second.sharing.share(alice, file_id, ["bob"]),
                             second.links.create(alice, file_id, None, None), return_exceptions=True)
        assert await first.db.fetchval("SELECT count(*) FROM shares WHERE file_id = :f", {"f": file_id}) == 0
        assert await first.db.fetchval("SELECT count(*) FROM links WHERE file_id = :f", {"f": file_id}) == 0
