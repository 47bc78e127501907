"""Sharing, deleting and listing files: permissions (never stale), content lifetime, pagination.

The gateway runs in-process on the in-memory store (tests/app_fixtures.py): these are rules of the
interface; test_uploads.py and test_client.py keep deletion and content lifetime on the real store.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from sqlalchemy import event, insert

from gateway.core import permissions
from gateway.core.clock import stamp_now
from gateway.core.content import content_key
from gateway.core.uploads import new_file_id
from gateway.db import tables
from storage import UploadNotFound
from tests.app_fixtures import app_gateway as gateway, make_app as make_gateway  # noqa: F401 - in-process
from tests.harness import Api, make_claim, put_chunks, upload

MIB = 1024 * 1024
CHUNK = 5 * MIB
FILES = "/dropbox/v1/files"
TRASH = "/dropbox/v1/trash"


async def stored(gateway, fingerprint: str) -> bool:
    """Whether the store holds the content object (asked with the store interface, not the gateway)."""
    return await gateway.core.store.stat(content_key(fingerprint)) is not None


async def share(api: Api, file_id: str, *users: str):
    return await api.post(f"{FILES}/share", json={"file_id": file_id, "users": list(users)})


async def everyone(gateway, http):
    api = Api(http, gateway.url)
    owner, friend, stranger = await api.signup(), await api.signup(), await api.signup()
    return api.as_user(None), owner, friend, stranger


# --- the permission matrix -----------------------------------------------------------------------


@pytest.mark.parametrize("cache_url", ["memory://", "none://"])
async def test_permission_matrix_of_every_file_endpoint(make_gateway, http, cache_url):
    gateway = await make_gateway(chunk_size=CHUNK, cache_url=cache_url)
    anonymous, owner, friend, stranger = await everyone(gateway, http)
    done = await upload(owner, os.urandom(1000), CHUNK, file_name="done.txt")
    pending = (await owner.post(FILES, json=make_claim(os.urandom(2000), CHUNK, file_name="pending.bin"))).body
    assert pending["status"] == "uploading"
    for file_id in (done["file_id"], pending["file_id"]):
        shared = await share(owner, file_id, friend.username)
        assert shared.status == 200 and shared.body == {"file_id": file_id, "shared_with": [friend.username]}
    missing_id = new_file_id()

    def expect(method, path, who, status, json=None):
        return method, path, who, status, json

    d, p = done["file_id"], pending["file_id"]
    cases = []
    for who, name in ((anonymous, "anonymous"), (stranger, "stranger"), (friend, "friend"), (owner, "owner")):
        reads = 401 if name == "anonymous" else 404 if name == "stranger" else None
        writes = 401 if name == "anonymous" else 404 if name in ("stranger", "friend") else None
        cases += [
            expect("GET", f"{FILES}/{d}", who, reads or 200),
            expect("GET", f"{FILES}/{p}", who, reads or 200),
            expect("GET", f"{FILES}/{d}/content", who, reads or 302),
            expect("GET", f"{FILES}/{p}/content", who, reads or 409),  # nothing to download yet
            expect("POST", f"{FILES}/{p}/upload-urls", who, writes or 200),
            expect("POST", f"{FILES}/{p}/complete", who, writes or 409),  # chunks missing
            expect("POST", f"{FILES}/share", who, writes or 200, {"file_id": d, "users": [friend.username]}),
            expect("DELETE", f"{FILES}/{d}/shares/{stranger.username}", who, writes or 204),
            expect("GET", f"{FILES}/{d}/shares", who, writes or 200),
        ]
        # A file id that does not exist answers exactly as one that is not yours.
        if name != "anonymous":
            for path in (f"{FILES}/{missing_id}", f"{FILES}/{missing_id}/content"):
                cases.append(expect("GET", path, who, 404))
            cases.append(expect("DELETE", f"{FILES}/{missing_id}", who, 404))
            cases.append(expect("GET", f"{FILES}/{missing_id}/shares", who, 404))
            cases.append(expect("POST", f"{FILES}/share", who, 404, {"file_id": missing_id, "users": [friend.username]}))
        if name != "owner":
            cases.append(expect("DELETE", f"{FILES}/{d}", who, writes))
            cases.append(expect("DELETE", f"{FILES}/{p}", who, writes))
            cases.append(expect("DELETE", f"{FILES}/{d}/shares/{friend.username}", who, writes))
    failures = []
    for method, path, who, status, body in cases:
        response = await who.request(method, path, json=body)
        if response.status != status:
            failures.append((method, path, getattr(who, "username", "anonymous"), status, response.status, response.body))
        elif status >= 400:
            assert set(response.body["error"]) >= {"code", "message"}, response.body
    assert not failures, failures
    # Nothing the others tried changed anything: the files are there and still shared.
    assert (await friend.get(f"{FILES}/{d}")).status == 200
    assert (await friend.get(f"{FILES}/{p}")).status == 200

    # Right after an unshare the friend is a stranger: no cached permission survives it.
    assert (await friend.get(f"{FILES}/{d}")).status == 200
    assert (await owner.delete(f"{FILES}/{d}/shares/{friend.username}")).status == 204
    assert (await friend.get(f"{FILES}/{d}")).status == 404
    assert (await friend.get(f"{FILES}/{d}/content")).status == 404
    assert (await friend.get(f"{FILES}/{p}")).status == 200  # the other share is untouched

    # Right after a delete nobody sees the file, the owner included, and it cannot be uploaded to.
    assert (await owner.get(f"{FILES}/{p}")).status == 200
    assert (await owner.delete(f"{FILES}/{p}")).status == 204
    for who in (owner, friend):
        assert (await who.get(f"{FILES}/{p}")).status == 404
    for action in ("upload-urls", "complete"):
        assert (await owner.post(f"{FILES}/{p}/{action}")).status == 404
    assert (await owner.delete(f"{FILES}/{p}")).status == 404
    assert (await owner.delete(f"{FILES}/{d}")).status == 204
    assert (await owner.get(f"{FILES}/{d}/content")).status == 404


@pytest.mark.parametrize("cache_url", ["memory://", "none://"])
async def test_share_unshare_share_again_is_seen_at_once(make_gateway, http, cache_url):
    gateway = await make_gateway(chunk_size=CHUNK, cache_url=cache_url)
    _, owner, friend, _ = await everyone(gateway, http)
    file_id = (await upload(owner, os.urandom(100), CHUNK))["file_id"]
    for _ in range(5):
        assert (await friend.get(f"{FILES}/{file_id}")).status == 404
        assert (await share(owner, file_id, friend.username)).status == 200
        assert (await friend.get(f"{FILES}/{file_id}")).status == 200
        assert (await friend.get(f"{FILES}/{file_id}")).status == 200
        assert (await owner.delete(f"{FILES}/{file_id}/shares/{friend.username}")).status == 204


async def test_an_invalidation_during_a_cache_fill_is_not_lost(make_gateway, http):
    """The lookup that read the database before an unshare must not put its stale answer in the cache."""
    gateway = await make_gateway(chunk_size=CHUNK)
    _, owner, friend, _ = await everyone(gateway, http)
    file_id = (await upload(owner, os.urandom(100), CHUNK))["file_id"]
    assert (await share(owner, file_id, friend.username)).status == 200
    access = gateway.core.permissions
    await access.invalidate(file_id)
    real_load = access._load

    async def load_then_unshare(file_id_, *rest):
        entry = await real_load(file_id_, *rest)  # still shared with the friend
        assert (await owner.delete(f"{FILES}/{file_id}/shares/{friend.username}")).status == 204
        return entry

    access._load = load_then_unshare
    try:
        stale = await access.file_access(file_id)
    finally:
        del access._load
    assert friend.user_id in stale["readers"]  # that one lookup raced the unshare...
    assert (await friend.get(f"{FILES}/{file_id}")).status == 404  # ...and nothing after it sees it
    fresh = await access.file_access(file_id)
    assert friend.user_id not in fresh["readers"]
    assert await access.cache.get(permissions.cache_key(file_id)) == fresh


async def test_status_changes_refresh_the_cached_file(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    _, owner, friend, _ = await everyone(gateway, http)
    data = os.urandom(CHUNK + 10)
    started = (await owner.post(FILES, json=make_claim(data, CHUNK))).body
    file_id = started["file_id"]
    assert (await share(owner, file_id, friend.username)).status == 200
    seen = await friend.get(f"{FILES}/{file_id}")
    assert seen.body["status"] == "uploading"
    assert await put_chunks(owner, file_id, data, CHUNK) == [200, 200]
    assert (await owner.post(f"{FILES}/{file_id}/complete")).body["status"] == "uploaded"
    for who in (owner, friend):
        seen = await who.get(f"{FILES}/{file_id}")
        assert seen.body["status"] == "uploaded" and seen.body["uploaded_chunks"] == 2, seen.body
        assert (await who.get(f"{FILES}/{file_id}/content")).status == 302


# --- sharing ---------------------------------------------------------------------------------------


async def test_sharing_is_all_or_nothing_idempotent_and_not_with_yourself(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    api = Api(http, gateway.url)
    owner, alice, bob = await api.signup(), await api.signup(), await api.signup()
    file_id = (await upload(owner, os.urandom(10), CHUNK))["file_id"]

    unknown = await share(owner, file_id, alice.username, "nobody-here", bob.username, "ghost-2")
    assert unknown.status == 404
    assert unknown.body["error"]["code"] == "unknown_users"
    assert unknown.body["error"]["users"] == ["nobody-here", "ghost-2"]
    assert "nobody-here" in unknown.body["error"]["message"] and "ghost-2" in unknown.body["error"]["message"]
    for who in (alice, bob):  # shared with nobody
        assert (await who.get(f"{FILES}/{file_id}")).status == 404
        assert (await who.get(f"{FILES}/shared")).body["files"] == []

    yourself = await share(owner, file_id, alice.username, owner.username)
    assert yourself.status == 400 and yourself.body["error"]["code"] == "cannot_share_with_yourself"
    assert (await alice.get(f"{FILES}/{file_id}")).status == 404

    first = await share(owner, file_id, alice.username)
    assert first.status == 200 and first.body["shared_with"] == [alice.username]
    # Twice, in another case, and with someone new: harmless, and the answer lists everyone.
    again = await share(owner, file_id, alice.username.upper(), bob.username, bob.username)
    assert again.status == 200
    assert sorted(again.body["shared_with"]) == sorted([alice.username, bob.username])
    assert (await share(owner, file_id, alice.username)).body["shared_with"] == again.body["shared_with"]
    for who in (alice, bob):
        assert (await who.get(f"{FILES}/{file_id}")).status == 200

    # Unsharing someone it is not shared with is 204 (idempotent); an unknown name is 404 naming it.
    assert (await owner.delete(f"{FILES}/{file_id}/shares/{alice.username}")).status == 204
    assert (await owner.delete(f"{FILES}/{file_id}/shares/{alice.username}")).status == 204
    ghost = await owner.delete(f"{FILES}/{file_id}/shares/ghost-3")
    assert ghost.status == 404 and ghost.body["error"]["users"] == ["ghost-3"]
    assert (await share(owner, file_id, bob.username)).body["shared_with"] == [bob.username]
    # Who has access now, as the owner reads it (the share dialog lists them).
    listed = await owner.get(f"{FILES}/{file_id}/shares")
    assert listed.status == 200 and listed.body == {"file_id": file_id, "shared_with": [bob.username]}

    for body in ({"file_id": file_id}, {"file_id": file_id, "users": []}, {"file_id": file_id, "users": "bob"},
                 {"users": [bob.username]}, {"file_id": file_id, "users": [3]}):
        bad = await owner.post(f"{FILES}/share", json=body)
        assert bad.status == 400, (body, bad.body)
        assert bad.body["error"]["field"] in ("file_id", "users")


# --- deleting and the content in the store -----------------------------------------------------------


async def test_content_stays_until_the_last_file_with_it_is_deleted_for_good(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    api = Api(http, gateway.url)
    alice, bob = await api.signup(), await api.signup()
    data = os.urandom(CHUNK + 77)
    first = await upload(alice, data, CHUNK, file_name="a.bin")
    copy = await upload(alice, data, CHUNK, file_name="copy of a.bin")  # deduplicated: no bytes moved
    theirs = await upload(bob, data, CHUNK, file_name="b.bin")  # bob sends the bytes himself
    fingerprint = first["fingerprint"]
    assert copy["fingerprint"] == theirs["fingerprint"] == fingerprint
    assert await stored(gateway, fingerprint)

    assert (await alice.delete(f"{FILES}/{first['file_id']}")).status == 204  # to the trash
    assert (await alice.delete(f"{TRASH}/{first['file_id']}")).status == 204  # deleted for good
    assert await stored(gateway, fingerprint)
    assert (await alice.get(f"{FILES}/{copy['file_id']}/content")).status == 302
    assert (await bob.delete(f"{FILES}/{theirs['file_id']}")).status == 204
    assert (await bob.delete(f"{TRASH}/{theirs['file_id']}")).status == 204
    assert await stored(gateway, fingerprint)
    assert (await alice.get(f"{FILES}/{copy['file_id']}")).body["status"] == "uploaded"
    assert (await alice.delete(f"{FILES}/{copy['file_id']}")).status == 204
    assert await stored(gateway, fingerprint)  # the trash keeps its content
    assert (await alice.delete(f"{TRASH}/{copy['file_id']}")).status == 204
    assert not await stored(gateway, fingerprint)
    assert (await alice.get(FILES)).body == {"files": [], "next_cursor": None}


async def test_deleting_an_upload_aborts_only_its_own_multipart_upload(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    api = Api(http, gateway.url)
    alice, bob = await api.signup(), await api.signup()
    store, db = gateway.core.store, gateway.core.db
    data = os.urandom(2 * CHUNK)
    claim = make_claim(data, CHUNK)
    key = content_key(claim["fingerprint"])
    mine = (await alice.post(FILES, json=claim)).body
    theirs = (await bob.post(FILES, json=claim)).body
    upload_ids = {
        row["file_id"]: row["upload_id"]
        for row in await db.fetchall("SELECT file_id, uploads.upload_id FROM uploads JOIN files ON files.id = file_id"
                                     " WHERE fingerprint = :fp", {"fp": claim["fingerprint"]})
    }
    assert len(set(upload_ids.values())) == 2
    assert await put_chunks(alice, mine["file_id"], data, CHUNK, [0]) == [200]
    assert await put_chunks(bob, theirs["file_id"], data, CHUNK, [0]) == [200]

    assert (await alice.delete(f"{FILES}/{mine['file_id']}")).status == 204
    with pytest.raises(UploadNotFound):
        await store.list_parts(key, upload_ids[mine["file_id"]])
    assert [p.part_number for p in await store.list_parts(key, upload_ids[theirs["file_id"]])] == [1]
    # Bob's upload goes on as if nothing happened.
    assert await put_chunks(bob, theirs["file_id"], data, CHUNK, [1]) == [200]
    done = await bob.post(f"{FILES}/{theirs['file_id']}/complete")
    assert done.status == 200 and done.body["status"] == "uploaded"
    assert await stored(gateway, claim["fingerprint"])

    # An upload that is deleted while someone else's finished file has the content leaves it alone.
    again = (await alice.post(FILES, json=claim)).body
    assert again["status"] == "uploading"
    assert (await alice.delete(f"{FILES}/{again['file_id']}")).status == 204
    assert await stored(gateway, claim["fingerprint"])
    assert (await bob.get(f"{FILES}/{theirs['file_id']}/content")).status == 302
    assert (await bob.delete(f"{FILES}/{theirs['file_id']}")).status == 204
    assert (await bob.delete(f"{TRASH}/{theirs['file_id']}")).status == 204
    assert not await stored(gateway, claim["fingerprint"])


async def test_content_is_kept_while_an_upload_of_it_is_under_way(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    api = Api(http, gateway.url)
    alice, bob = await api.signup(), await api.signup()
    data = os.urandom(CHUNK + 1)
    done = await upload(alice, data, CHUNK)
    underway = (await bob.post(FILES, json=make_claim(data, CHUNK))).body
    assert underway["status"] == "uploading"
    assert (await alice.delete(f"{FILES}/{done['file_id']}")).status == 204
    assert await stored(gateway, done["fingerprint"])  # bob's upload refers to it
    assert await put_chunks(bob, underway["file_id"], data, CHUNK) == [200, 200]
    finished = await bob.post(f"{FILES}/{underway['file_id']}/complete")
    assert finished.body["status"] == "uploaded"
    assert await stored(gateway, done["fingerprint"])


# --- listings -------------------------------------------------------------------------------------------


async def insert_files(gateway, owner_id: int, count: int, template: dict) -> list[str]:
    """Rows for ``count`` uploaded files with ``template``'s content, written straight into the database."""
    now = stamp_now(gateway.clock)
    ids = [new_file_id() for _ in range(count)]
    async with gateway.core.db.transaction() as conn:
        await conn.execute(
            insert(tables.files),
            [
                {"id": file_id, "owner_id": owner_id, "file_name": f"file-{n}.bin", "file_size": template["file_size"],
                 "file_type": "application/octet-stream", "fingerprint": template["fingerprint"],
                 "chunk_size": template["chunk_size"], "total_chunks": template["total_chunks"], "status": "uploaded",
                 "created_at": now, "updated_at": now, "completed_at": now}
                for n, file_id in enumerate(ids)
            ],
        )
        await conn.execute(
            insert(tables.chunks),
            [
                {"file_id": file_id, "idx": chunk["index"], "fingerprint": chunk["fingerprint"],
                 "size": template["file_size"], "status": "uploaded"}
                for file_id in ids
                for chunk in template["chunks"]
            ],
        )
        await conn.execute(  # each in the owner's root, as an uploaded file is
            insert(tables.nodes),
            [
                {"id": file_id, "owner_id": owner_id, "kind": "file", "parent_id": "root", "name": f"file-{n}.bin",
                 "name_key": f"file-{n}.bin", "created_at": now, "modified_at": now}
                for n, file_id in enumerate(ids)
            ],
        )
    return ids


async def page_through(api: Api, path: str, limit: int) -> list[dict]:
    files, cursor, pages = [], None, 0
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = await api.get(path + ("&" + query[1:] if "?" in path else query))
        assert page.status == 200, page.body
        assert len(page.body["files"]) <= limit
        files += page.body["files"]
        cursor = page.body["next_cursor"]
        pages += 1
        assert pages < 10_000
        if cursor is None:
            return files


MEASURED = "measured-request"  # the request id statements_run counts the statements of


@contextlib.contextmanager
def statements_run(gateway) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements the gateway runs within the block for requests sent with ``X-Request-Id:
    MEASURED``, as given to the driver, with their parameters (SQLite's BEGINs left out).

    request_id_middleware binds the request id in the context the database calls run in: the
    background loops (the journal's tail, reconciliation) query on their own clock, under ids of their
    own, and one of them landed inside a measured request on a loaded machine.
    """
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement != "BEGIN" and structlog.contextvars.get_contextvars().get("request_id") == MEASURED:
            seen.append((statement, parameters))

    engine = gateway.core.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def query_plan(gateway, statement: str, parameters: Any) -> str:
    """How the database runs ``statement``, sorting rows only where no index gives them in order.

    PostgreSQL's choice between an index and a sort depends on its statistics of the moment (a
    table of a few rows is sorted faster); with sorts ruled out, a sort in the plan means that
    no index can give that order.
    """
    db = gateway.core.db
    async with db.read() as conn:
        if db.dialect == "sqlite":
            rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
            return "\n".join(row[-1] for row in rows)
        await conn.exec_driver_sql("SET LOCAL enable_sort = off")
        rows = (await conn.exec_driver_sql("EXPLAIN " + statement, parameters)).all()
        return "\n".join(row[0] for row in rows)


@pytest.mark.every_engine  # paging queries
async def test_listing_pages_through_1000_files_newest_first(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    api = Api(http, gateway.url)
    owner, other = await api.signup(), await api.signup()
    template = await upload(owner, os.urandom(100), CHUNK, file_name="first.txt")
    ids = [template["file_id"], *await insert_files(gateway, owner.user_id, 998, template)]
    last = await upload(owner, os.urandom(100), CHUNK, file_name="newest.txt")
    ids.append(last["file_id"])
    await insert_files(gateway, other.user_id, 50, template)  # someone else's: never listed
    expected = list(reversed(ids))  # newest first

    for limit in (100, 37, 1000):
        files = await page_through(owner, FILES, limit)
        assert [f["file_id"] for f in files] == expected, limit

    # Every page costs the same however many files the owner has: it is one query whatever its size or
    # place (no statement per file), and that query reads the owner's files from files_by_owner starting
    # at the cursor, already in order (no sort). That the pages are keyset ones, not OFFSET ones, the file
    # added while paging shows below.
    costs = []
    cursor = (await owner.get(f"{FILES}?limit=500")).body["next_cursor"]
    for query in ("?limit=1", "?limit=1000", f"?limit=37&cursor={cursor}"):
        with statements_run(gateway) as statements:
            assert (await owner.get(FILES + query, headers={"X-Request-Id": MEASURED})).status == 200
        costs.append(statements)
    assert [len(statements) for statements in costs] == [1, 1, 1], costs
    plan = await query_plan(gateway, *costs[-1][0])
    if gateway.core.db.dialect == "sqlite":
        assert re.search(r"SEARCH files USING (COVERING )?INDEX files_by_owner \(owner_id=\? AND seq<\?\)", plan), plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        # Which index PostgreSQL's planner takes depends on its statistics of the moment (with one owner,
        # the primary key on seq, read backward, is as good); either way it starts at the cursor, in order.
        assert re.search(r"Index Scan (Backward )?using \w+ on files .*\n\s+Index Cond: .*\(seq < .+\)", plan), plan
        assert "Sort" not in plan, plan

    default = await owner.get(FILES)
    assert len(default.body["files"]) == 100 and default.body["next_cursor"]
    newest = default.body["files"][0]
    assert newest["file_id"] == last["file_id"] and newest["file_name"] == "newest.txt"
    # Listings give no chunk arrays (contract v1.1); the counts stay.
    assert "chunks" not in newest and newest["status"] == "uploaded" and "download_url" in newest
    assert newest["total_chunks"] == newest["uploaded_chunks"] == len(last["chunks"])
    sample = default.body["files"][50]
    assert "chunks" not in sample and sample["uploaded_chunks"] == 1
    assert sample["uploaded_by"] == owner.username

    # The fingerprint filter pages the same way.
    same = await page_through(owner, f"{FILES}?fingerprint={template['fingerprint']}", 300)
    assert [f["file_id"] for f in same] == expected[1:]
    only = await owner.get(f"{FILES}?fingerprint={last['fingerprint']}")
    assert [f["file_id"] for f in only.body["files"]] == [last["file_id"]] and only.body["next_cursor"] is None

    # A file added while paging does not disturb the pages after it (an OFFSET page would start a file early).
    first_page = await owner.get(f"{FILES}?limit=10")
    await upload(owner, os.urandom(100), CHUNK, file_name="during.txt")
    second = await owner.get(f"{FILES}?limit=10&cursor={first_page.body['next_cursor']}")
    assert [f["file_id"] for f in second.body["files"]] == expected[10:20]


async def test_bad_limits_and_cursors_are_400_naming_them(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    owner = await Api(http, gateway.url).signup()
    await upload(owner, os.urandom(10), CHUNK)
    shared_cursor = "djE6c2hhcmVkOmFiYw"  # a cursor of the shared listing
    for path in (FILES, f"{FILES}/shared"):
        for limit in ("0", "1001", "-1", "ten", "", "1.5"):
            bad = await owner.get(f"{path}?limit={limit}")
            assert bad.status == 400, (path, limit)
            assert bad.body["error"]["field"] == "limit" and "limit" in bad.body["error"]["message"]
        for cursor in ("garbage!", "Zm9v", "djE6b3duOng", "djE6b3duOg"):
            bad = await owner.get(f"{path}?cursor={cursor}")
            assert bad.status == 400, (path, cursor)
            assert bad.body["error"]["field"] == "cursor" and "cursor" in bad.body["error"]["message"]
    assert (await owner.get(f"{FILES}?cursor={shared_cursor}")).status == 400
    assert (await owner.get(f"{FILES}?limit=1000")).status == 200
    assert (await owner.get(f"{FILES}?fingerprint=ABC")).status == 400


@pytest.mark.every_engine  # paging queries
async def test_shared_listing_pages_and_follows_shares(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    api = Api(http, gateway.url)
    owner, friend, stranger = await api.signup(), await api.signup(), await api.signup()
    template = await upload(owner, os.urandom(100), CHUNK)
    ids = await insert_files(gateway, owner.user_id, 250, template)
    async with gateway.core.db.transaction() as conn:
        await conn.execute(
            insert(tables.shares),
            [{"file_id": file_id, "user_id": friend.user_id, "created_at": stamp_now(gateway.clock)} for file_id in ids],
        )
    gateway.clock.advance(1)
    assert (await share(owner, template["file_id"], friend.username)).status == 200
    expected = {template["file_id"], *ids}

    files = await page_through(friend, f"{FILES}/shared", 60)
    assert len(files) == len(expected) and {f["file_id"] for f in files} == expected
    assert all(f["uploaded_by"] == owner.username and "chunks" not in f and f["uploaded_chunks"] == 1 for f in files)
    again = await page_through(friend, f"{FILES}/shared", 1000)
    assert [f["file_id"] for f in again] == [f["file_id"] for f in files]  # the same order every time
    assert files[0]["file_id"] == template["file_id"]  # newest share first
    newest_first = await gateway.core.db.fetchall(
        "SELECT file_id FROM shares WHERE user_id = :user ORDER BY created_at DESC, file_id DESC", {"user": friend.user_id}
    )
    assert [f["file_id"] for f in files] == [row["file_id"] for row in newest_first]

    assert (await owner.delete(f"{FILES}/{ids[0]}/shares/{friend.username}")).status == 204
    assert (await owner.delete(f"{FILES}/{ids[1]}")).status == 204
    left = {f["file_id"] for f in await page_through(friend, f"{FILES}/shared", 100)}
    assert left == expected - {ids[0], ids[1]}
    assert (await stranger.get(f"{FILES}/shared")).body == {"files": [], "next_cursor": None}
    assert (await owner.get(f"{FILES}/shared")).body == {"files": [], "next_cursor": None}
    assert (await api.get(f"{FILES}/shared")).status == 401


@pytest.mark.every_engine  # concurrent transactions
async def test_concurrent_reads_during_unshare_never_outlive_it(make_gateway, http):
    """Readers hammering the file while it is unshared: every read that starts after the 204 is a 404."""
    gateway = await make_gateway(chunk_size=CHUNK)
    _, owner, friend, _ = await everyone(gateway, http)
    file_id = (await upload(owner, os.urandom(100), CHUNK))["file_id"]
    assert (await share(owner, file_id, friend.username)).status == 200
    readers, reads_after = 8, 5
    read_before = asyncio.Event()  # a read succeeded (and so filled the cache) before the unshare began
    unshared = asyncio.Event()  # the unshare has answered 204
    late: list[list[int]] = [[] for _ in range(readers)]  # each reader's statuses of the reads begun after the 204

    async def reader(n: int) -> None:
        while len(late[n]) < reads_after:
            after = unshared.is_set()
            status = (await friend.get(f"{FILES}/{file_id}")).status
            if after:
                late[n].append(status)
            elif status == 200:
                read_before.set()

    async def unsharer() -> None:
        await asyncio.wait_for(read_before.wait(), 60)
        assert (await owner.delete(f"{FILES}/{file_id}/shares/{friend.username}")).status == 204
        unshared.set()

    async with asyncio.TaskGroup() as readings:
        for n in range(readers):
            readings.create_task(reader(n))
        readings.create_task(unsharer())
    assert late == [[404] * reads_after] * readers


async def test_an_id_that_is_no_file_id_is_a_missing_file_not_a_missing_endpoint(api: Api):
    user = await api.signup()
    for path in ("/dropbox/v1/files/no-such-file-id", "/dropbox/v1/files/NOTHEX/content"):
        answer = await user.get(path)
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found", path
    answer = await user.post("/dropbox/v1/files/" + "a" * 31 + "/complete", json={})
    assert answer.status == 404 and answer.body["error"]["code"] == "not_found"
    assert (await user.get("/dropbox/v1/nowhere")).body["error"]["code"] == "unknown_endpoint"
