"""The change journal over HTTP (contract v1.2, Changes): listings, changes since a cursor, waits, cursors
that are checked, retention. The gateway in-process on the in-memory store (tests/app_fixtures.py)."""
from __future__ import annotations

import asyncio

import pytest

from protocol.paths import name_key
from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - in-process
from tests.harness import Api
from tests.test_tree import FOLDERS, error_of, mkdir, put_file
from tests.test_tree import alice, gateway  # noqa: F401 - fixtures: a user of an in-process gateway

CHANGES = "/dropbox/v1/changes"


class Mirror:
    """A client that follows ids, as `dbx sync` does: the tree as the journal told it. A deleted node waits
    in limbo with what it holds (a move is a ``deleted`` and then the object at its new place) until the
    read reaches its end."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[str, str, str]] = {}  # id -> (parent_id, name, type)

    def apply(self, change: dict) -> None:
        if change["type"] == "deleted":
            if change["id"] in self.nodes:
                self.nodes[change["id"]] = ("~limbo", *self.nodes[change["id"]][1:])
            return
        node_id = change["folder_id"] if change["type"] == "folder" else change["file_id"]
        for other, (parent, name, _) in list(self.nodes.items()):  # a replaced file: its name is taken now
            if other != node_id and parent == change["parent_id"] and name_key(name) == name_key(change["name"]):
                self._drop(other)
        self.nodes[node_id] = (change["parent_id"], change["name"], change["type"])

    def end_of_read(self) -> None:
        for node_id, (parent, _, _) in list(self.nodes.items()):
            if parent == "~limbo":
                self._drop(node_id)

    def _drop(self, node_id: str) -> None:
        self.nodes.pop(node_id, None)
        for child, (parent, _, _) in list(self.nodes.items()):
            if parent == node_id:
                self._drop(child)

    def paths(self) -> set[str]:
        def path(node_id: str) -> str:
            parent, name, _ = self.nodes[node_id]
            return "/" + name if parent == "root" else path(parent) + "/" + name
        return {path(node_id) for node_id in self.nodes}


async def read_all(api: Api, cursor: str | None = None, limit: int = 1000, mirror: Mirror | None = None,
                   between_pages=None) -> tuple[list[dict], str]:
    """Every page until has_more is false: (all changes, the last cursor)."""
    found: list[dict] = []
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        answer = await api.get(CHANGES + query)
        assert answer.status == 200, answer.body
        found += answer.body["changes"]
        if mirror is not None:
            for change in answer.body["changes"]:
                mirror.apply(change)
        cursor = answer.body["cursor"]
        if not answer.body["has_more"]:
            if mirror is not None:
                mirror.end_of_read()
            return found, cursor
        if between_pages is not None:
            await between_pages()


def brief(change: dict) -> tuple[str, str]:
    return change["type"], change["path"]


async def test_a_listing_is_the_tree_parents_first_then_changes_follow_in_order(alice):
    await mkdir(alice, "/docs/2026")
    docs = (await alice.get("/dropbox/v1/metadata?path=/docs")).body
    await put_file(alice, b"report", "report.txt", path="/docs/2026/report.txt")
    listed, cursor = await read_all(alice)
    assert [brief(change) for change in listed] == [
        ("folder", "/docs"), ("folder", "/docs/2026"), ("file", "/docs/2026/report.txt")]
    assert (await alice.get(f"{CHANGES}?cursor={cursor}")).body == {"changes": [], "cursor": cursor, "has_more": False}

    renamed = await alice.patch(f"{FOLDERS}/{docs['folder_id']}", json={"name": "papers"})
    assert renamed.status == 200
    new = await put_file(alice, b"new", "new.txt", path="/papers/new.txt")
    assert (await alice.post(FOLDERS, json={"path": "/papers/2026/report.txt"})).status == 409  # rolled back
    since, cursor = await read_all(alice, cursor)
    assert [brief(change) for change in since] == [
        ("deleted", "/docs"), ("folder", "/papers"), ("file", "/papers/new.txt")]
    assert since[0]["id"] == since[1]["folder_id"] == docs["folder_id"]
    assert since[2]["file_id"] == new["file_id"]


async def test_deletes_restores_and_replacements_are_told_as_the_contract_says(alice):
    folder = await mkdir(alice, "/a/b")
    first = await put_file(alice, b"one", "f.txt", path="/a/b/f.txt")
    _, cursor = await read_all(alice)
    top = (await alice.get("/dropbox/v1/metadata?path=/a")).body
    second = await put_file(alice, b"two", "f.txt", path="/a/b/f.txt", mode="overwrite")
    assert (await alice.delete(f"{FOLDERS}/{top['folder_id']}")).status == 204
    since, cursor = await read_all(alice, cursor)
    assert [brief(change) for change in since] == [("deleted", "/a")]  # the new file is gone already
    assert since[0]["id"] == top["folder_id"]

    restored = await alice.post(f"/dropbox/v1/trash/{top['folder_id']}/restore")
    assert restored.status == 200
    since, cursor = await read_all(alice, cursor)
    assert [brief(change) for change in since] == [("folder", "/a"), ("folder", "/a/b"), ("file", "/a/b/f.txt")]
    assert since[1]["folder_id"] == folder["folder_id"] and since[2]["file_id"] == second["file_id"]

    third = await put_file(alice, b"three", "f.txt", path="/a/b/f.txt", mode="update", replaces=second["file_id"])
    since, cursor = await read_all(alice, cursor)
    assert since == [{**since[0], "type": "file", "file_id": third["file_id"], "path": "/a/b/f.txt"}]
    assert first["file_id"] != third["file_id"]


async def test_a_long_listing_is_one_snapshot_while_the_tree_changes_between_its_pages(alice):
    for index in range(6):
        await mkdir(alice, f"/d{index}/inner")
        await put_file(alice, f"content {index}".encode(), "x.txt", path=f"/d{index}/inner/x.txt")
    listed = (await alice.get("/dropbox/v1/metadata?path=/d5")).body
    moved = iter(range(100))

    async def change_the_tree() -> None:
        step = next(moved)
        if step == 0:  # the last folder, not listed yet, moves to the top of the order
            assert (await alice.patch(f"{FOLDERS}/{listed['folder_id']}", json={"name": "a-first"})).status == 200
        elif step == 1:
            await put_file(alice, b"late", "late.txt", path="/d0/late.txt")
        elif step == 2:
            first = (await alice.get("/dropbox/v1/metadata?path=/d1")).body
            assert (await alice.delete(f"{FOLDERS}/{first['folder_id']}")).status == 204

    mirror = Mirror()
    snapshot, cursor = await read_all(alice, limit=4, mirror=mirror, between_pages=change_the_tree)
    ids = [change.get("folder_id") or change["file_id"] for change in snapshot]
    assert len(ids) == len(set(ids)) == 18  # nothing twice, nothing lost: the tree as it was
    seen: set[str] = {"root"}
    for change in snapshot:  # parents first
        assert change["parent_id"] in seen
        seen.add(change.get("folder_id") or change["file_id"])
    await read_all(alice, cursor, mirror=mirror)
    again = Mirror()
    await read_all(alice, mirror=again)
    assert mirror.paths() == again.paths()
    assert "/a-first/inner/x.txt" in mirror.paths() and "/d0/late.txt" in mirror.paths()
    assert not any(path.startswith("/d1") for path in mirror.paths())


async def test_cursors_are_checked_another_users_or_a_forged_one_is_400(gateway, http, alice):
    bob = await Api(http, gateway.url).signup()
    await mkdir(alice, "/secret")
    _, cursor = await read_all(alice)
    await mkdir(alice, "/secret/more")
    for bad in (cursor, cursor[:-1] + ("0" if cursor[-1] != "0" else "1"), "v1.changes.0." + "0" * 32, "nonsense", ""):
        for path in (CHANGES, f"{CHANGES}/wait"):
            answer = await bob.get(f"{path}?cursor={bad}&timeout=1")
            assert error_of(answer) == (400, "invalid_cursor"), (path, bad, answer.body)
    _, listing = await read_all(alice, limit=1)
    assert error_of(await bob.get(f"{CHANGES}?cursor={listing}")) == (400, "invalid_cursor")
    assert error_of(await alice.get(f"{CHANGES}/wait")) == (400, "invalid_cursor")
    for timeout in ("0", "121", "-1", "1.5", "x"):
        assert error_of(await alice.get(f"{CHANGES}/wait?cursor={cursor}&timeout={timeout}")) == (400, "invalid_field")
    assert error_of(await alice.get(f"{CHANGES}?limit=0")) == (400, "invalid_limit")
    assert (await http.get(f"{gateway.url}{CHANGES}")).status == 401


async def test_a_wait_answers_at_once_when_something_changed_else_when_a_change_comes(alice):
    _, cursor = await read_all(alice)
    waiting = asyncio.create_task(alice.get(f"{CHANGES}/wait?cursor={cursor}&timeout=60"))
    await asyncio.sleep(0)  # not a wait for time: the request is on its way, or done once the change is made
    await mkdir(alice, "/new")
    answer = await asyncio.wait_for(waiting, 10)
    assert answer.status == 200 and answer.body == {"changes": True}
    assert (await alice.get(f"{CHANGES}/wait?cursor={cursor}")).body == {"changes": True}
    _, cursor = await read_all(alice, cursor)
    assert (await alice.get(f"{CHANGES}/wait?cursor={cursor}&timeout=1")).body == {"changes": False}


@pytest.mark.every_engine
async def test_held_waits_hold_no_database_connection(gateway, alice):
    """More waits than the database pool has connections (10 + 10 overflow on PostgreSQL): were each holding one,
    the change below would wait for a free connection; it is made at once and wakes them all."""
    _, cursor = await read_all(alice)
    count = 40
    waits = [asyncio.create_task(alice.get(f"{CHANGES}/wait?cursor={cursor}&timeout=120")) for _ in range(count)]
    waiters = gateway.core.changes.waiters
    while len(waiters) < count:  # until the gateway holds every wait (an event of its own, not a time)
        assert not any(w.done() for w in waits), [w.result().body for w in waits if w.done()]
        await asyncio.sleep(0.01)
    made = await asyncio.wait_for(mkdir(alice, "/while-40-wait"), 10)  # a guard: a pool's timeout is 30 s
    assert made["path"] == "/while-40-wait"
    answers = await asyncio.wait_for(asyncio.gather(*waits), 30)
    assert [(a.status, a.body) for a in answers] == [(200, {"changes": True})] * count


async def test_a_stopping_gateway_answers_its_held_waits_at_once(gateway, alice):
    """A long poll outlives its client (aiohttp does not cancel a handler when the client goes), so a stopping
    gateway waited for each held wait to time out (a test's teardown took 60 s). It answers them instead."""
    _, cursor = await read_all(alice)
    waiting = asyncio.create_task(alice.get(f"{CHANGES}/wait?cursor={cursor}&timeout=120"))
    waiters = gateway.core.changes.waiters
    while not len(waiters):  # until the gateway holds the wait (an event of its own, not a time)
        assert not waiting.done(), waiting.result()
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(gateway.stop())
    answer = await asyncio.wait_for(waiting, 30)  # well before the wait's own 120 s: the stop answered it
    assert answer.status == 200 and answer.body == {"changes": False}
    await stopping


async def test_changes_older_than_the_retention_are_pruned_and_their_cursors_reset(gateway, http, alice, app_clock):
    bob = await Api(http, gateway.url).signup()
    _, alices = await read_all(alice)
    _, bobs = await read_all(bob)
    await mkdir(alice, "/old")
    app_clock.advance(gateway.core.config.change_retention + 10)
    await mkdir(alice, "/new")
    pruned = await gateway.core.housekeeping()
    assert pruned["pruned_changes"] == 1
    answer = await alice.get(f"{CHANGES}?cursor={alices}")
    assert error_of(answer) == (410, "cursor_reset")
    assert error_of(await alice.get(f"{CHANGES}/wait?cursor={alices}")) == (410, "cursor_reset")
    assert (await bob.get(f"{CHANGES}?cursor={bobs}")).body["changes"] == []  # an idle user's cursor stays good
    listed, _ = await read_all(alice)
    assert {change["path"] for change in listed} == {"/old", "/new"}
