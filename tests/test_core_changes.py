"""The change journal in the core, on both engines: records in the change's own transaction, listings
that are one snapshot while other gateways change the tree, replays that end where the tree is.

The simulation changes the tree through a second core (a second gateway's connection pool on the same
database) while the first reads a listing page by page, at the same time as its reads on PostgreSQL;
each seed's run is reproducible from the seed in the failure message.
"""
from __future__ import annotations

import asyncio
import random

import pytest

from gateway.cache import make_cache
from gateway.core import Core, build_core
from gateway.core.changes import Deleted
from gateway.core.errors import Cycle, NameTaken, NodeNotFound
from gateway.core.namespace import Change
from gateway.core.tree import Entry
from gateway.db import Database
from gateway.db import database_url as sqlalchemy_url
from gateway.db.nodes import FOLDER, ROOT
from tests.core_fixtures import core_config, new_user, uploaded

pytestmark = pytest.mark.every_engine  # the journal's transactions and the listing's lock, on both engines
LIMBO = "~limbo"


@pytest.fixture
async def gateways(database_url, database_path, memory_store, clock):
    """Two cores on one database, each with its own connection pool (two gateway processes)."""
    opened = []
    for _ in range(2):
        db = await Database.open(sqlalchemy_url(database_url, str(database_path)))
        config = core_config()
        cache = make_cache(config)
        opened.append((db, cache, build_core(config, db, memory_store, cache, clock)))
    yield [core for _, _, core in opened]
    for db, cache, _ in opened:
        await cache.close()
        await db.close()


class Mirror:
    """The tree as a client following ids learns it from the journal (limbo until the read ends)."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[str, str]] = {}

    def apply(self, item: Entry | Deleted) -> None:
        if isinstance(item, Deleted):
            if item.node_id in self.nodes:
                self.nodes[item.node_id] = (LIMBO, self.nodes[item.node_id][1])
            return
        node = item.node
        for other, (parent, name) in list(self.nodes.items()):
            if other != node["id"] and parent == node["parent_id"] and name.casefold() == node["name"].casefold():
                self.nodes[other] = (LIMBO, name)
        self.nodes[node["id"]] = (node["parent_id"], node["name"])

    def end_of_read(self) -> None:
        gone = {node_id for node_id, (parent, _) in self.nodes.items() if parent == LIMBO}
        while gone:
            for node_id in gone:
                self.nodes.pop(node_id, None)
            gone = {node_id for node_id, (parent, _) in self.nodes.items() if parent not in self.nodes and parent != ROOT}


async def read(core: Core, owner: int, mirror: Mirror, cursor: str | None = None, limit: int = 1000,
               between=None) -> tuple[list[Entry | Deleted], str]:
    items: list[Entry | Deleted] = []
    while True:
        page = await core.changes.page(owner, cursor, limit)
        items += page.items
        for item in page.items:
            mirror.apply(item)
        cursor = page.cursor
        if not page.has_more:
            mirror.end_of_read()
            return items, cursor
        if between is not None:
            await between()


async def tree_now(core: Core, owner: int) -> dict[str, tuple[str, str]]:
    mirror = Mirror()
    await read(core, owner, mirror)
    return mirror.nodes


async def test_a_change_that_rolls_back_leaves_no_record(core, clock):
    owner = await new_user(core, "alice")
    _, cursor = await read(core, owner, Mirror())
    with pytest.raises(RuntimeError):
        async with core.namespace.changing(owner) as journal:
            await core.namespace._insert_folder(journal, ROOT, "never")
            await journal.record(Change("created", "0" * 32, FOLDER))
            raise RuntimeError("the change fails after recording")
    assert (await core.changes.page(owner, cursor, 100)).items == []
    with pytest.raises(NameTaken):
        await core.namespace.make_folder(owner, ROOT, "twice")
        await core.namespace.make_folder(owner, ROOT, "twice")
    items, _ = await read(core, owner, Mirror(), cursor)
    assert [item.path for item in items] == ["/twice"]  # one record: the second one rolled back


async def random_change(core: Core, owner: int, rng: random.Random, memory_store) -> None:
    """One change a user might make: a folder, an upload, a move or rename, a deletion, a restore."""
    nodes = await tree_now(core, owner)
    folders = [ROOT] + [node_id for node_id, _ in nodes.items() if await is_folder(core, owner, node_id)]
    kind = rng.choice(["mkdir", "mkdir", "upload", "move", "move", "trash", "restore"])
    try:
        if kind == "mkdir":
            await core.namespace.make_folder(owner, rng.choice(folders), f"f{rng.randrange(8)}", autorename=True)
        elif kind == "upload":
            file_id = await uploaded(core, memory_store, owner, rng.randbytes(16), f"u{rng.randrange(8)}.bin")
            await core.namespace.move(owner, file_id, "file", parent_id=rng.choice(folders), autorename=True)
        elif kind == "move" and nodes:
            node_id = rng.choice(sorted(nodes))
            await core.namespace.move(owner, node_id, FOLDER if node_id in folders else "file",
                                      parent_id=rng.choice(folders), name=f"m{rng.randrange(8)}", autorename=True)
        elif kind == "trash" and nodes:
            node_id = rng.choice(sorted(nodes))
            await core.tree.trash(owner, node_id, FOLDER if node_id in folders else "file")
        elif kind == "restore":
            entries, _ = await core.tree.trash_page(owner, 10, None)
            if entries:
                await core.tree.restore(owner, rng.choice(entries).node["id"])
    except (Cycle, NameTaken, NodeNotFound):
        pass  # refused as the contract says: no change, no record


async def is_folder(core: Core, owner: int, node_id: str) -> bool:
    try:
        await core.namespace.node(owner, node_id, FOLDER)
    except NodeNotFound:
        return False
    return True


@pytest.mark.parametrize("seed", range(4))
async def test_a_listing_is_one_snapshot_while_another_gateway_changes_the_tree(gateways, memory_store, seed):
    reader, writer = gateways
    rng = random.Random(seed)
    owner = await new_user(reader, "alice")
    for _ in range(25):
        await random_change(writer, owner, rng, memory_store)

    async def meanwhile() -> None:  # changes through the other gateway, some while the next page is read
        for _ in range(rng.randrange(3)):
            await random_change(writer, owner, rng, memory_store)

    mirror = Mirror()
    before = await tree_now(reader, owner)
    listing = await reader.changes.page(owner, None, 3)
    snapshot = list(listing.items)
    cursor = listing.cursor
    while listing.has_more:
        listing, _ = await asyncio.gather(reader.changes.page(owner, cursor, 3), meanwhile())
        snapshot += listing.items
        cursor = listing.cursor
    ids = [item.node["id"] for item in snapshot if isinstance(item, Entry)]
    assert len(ids) == len(set(ids)) == len(before), f"seed {seed}: the listing is the tree as it was, once"
    seen = {ROOT}
    for item in snapshot:
        assert isinstance(item, Entry) and item.node["parent_id"] in seen, f"seed {seed}: parents first"
        seen.add(item.node["id"])
        mirror.apply(item)
    mirror.end_of_read()
    assert mirror.nodes == before, f"seed {seed}"
    for _ in range(5):
        await random_change(writer, owner, rng, memory_store)
    await read(reader, owner, mirror, cursor, limit=rng.choice([1, 2, 1000]))
    assert mirror.nodes == await tree_now(reader, owner), f"seed {seed}: the replay ends where the tree is"
