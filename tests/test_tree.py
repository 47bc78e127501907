"""The tree over HTTP (contract v1.2): folders, entries, metadata, renames and moves, copies, uploads into
the tree, versions, the trash and search, with the contract's errors. The gateway in-process on the
in-memory store (tests/app_fixtures.py): the interface's shape, permissions and paging.
"""
from __future__ import annotations

import datetime
import os

import pytest

from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - in-process
from tests.harness import Api, make_claim, put_chunks

CHUNK = 5 * 1024 * 1024
FILES, FOLDERS = "/dropbox/v1/files", "/dropbox/v1/folders"


@pytest.fixture
async def gateway(make_gateway):
    return await make_gateway(chunk_size=CHUNK)


@pytest.fixture
async def alice(gateway, http) -> Api:
    return await Api(http, gateway.url).signup()


async def put_file(api: Api, data: bytes, name: str = "file.bin", **target) -> dict:
    """Upload ``data`` (one chunk or none) into the tree with ``target`` (parent_id, path, mode, replaces)."""
    started = await api.post(FILES, json={**make_claim(data, CHUNK, file_name=name), **target})
    assert started.status in (200, 201), started.body
    if started.body["status"] == "uploading":
        assert set(await put_chunks(api, started.body["file_id"], data, CHUNK)) == {200}
        done = await api.post(f"{FILES}/{started.body['file_id']}/complete")
        assert done.status == 200, done.body
        return done.body
    return started.body


async def mkdir(api: Api, path: str) -> dict:
    made = await api.post(FOLDERS, json={"path": path})
    assert made.status in (200, 201), made.body
    return made.body


async def names_in(api: Api, folder_id: str = "root", limit: int = 1000) -> list[str]:
    listed = await api.get(f"{FOLDERS}/{folder_id}/entries?limit={limit}")
    assert listed.status == 200, listed.body
    return [entry["name"] for entry in listed.body["entries"]]


def error_of(answer) -> tuple[int, str]:
    return answer.status, answer.body["error"]["code"]


async def test_the_root_is_root_with_path_slash(alice):
    root = await alice.get(f"{FOLDERS}/root")
    assert root.status == 200
    assert {k: root.body[k] for k in ("type", "folder_id", "name", "path", "parent_id")} == {
        "type": "folder", "folder_id": "root", "name": "", "path": "/", "parent_id": None}
    assert (await alice.get("/dropbox/v1/metadata?path=/")).body["folder_id"] == "root"


async def test_folders_by_path_make_their_parents_and_an_existing_one_is_200(alice):
    made = await alice.post(FOLDERS, json={"path": "/Work/Reports/2026"})
    assert made.status == 201 and made.body["path"] == "/Work/Reports/2026" and made.body["name"] == "2026"
    again = await alice.post(FOLDERS, json={"path": "/work/REPORTS/2026"})
    assert again.status == 200 and again.body["folder_id"] == made.body["folder_id"]
    work = (await alice.get("/dropbox/v1/metadata?path=/Work")).body
    assert work["type"] == "folder" and work["parent_id"] == "root"
    assert (await alice.get(f"{FOLDERS}/{made.body['parent_id']}")).body["path"] == "/Work/Reports"


async def test_names_are_unique_in_a_folder_without_regard_to_case_and_autorename_picks_a_free_one(alice):
    first = await alice.post(FOLDERS, json={"parent_id": "root", "name": "Report"})
    assert first.status == 201
    assert error_of(await alice.post(FOLDERS, json={"parent_id": "root", "name": "REPORT"})) == (409, "name_taken")
    renamed = await alice.post(FOLDERS, json={"parent_id": "root", "name": "report", "autorename": True})
    assert renamed.status == 201 and renamed.body["name"] == "report (1)"
    await put_file(alice, b"x", "notes.txt")
    assert error_of(await alice.post(FOLDERS, json={"path": "/NOTES.txt"})) == (409, "name_taken")  # a file holds it
    assert error_of(await alice.post(FOLDERS, json={"path": "/notes.txt/inner"})) == (409, "name_taken")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "tab\there", "x" * 256, "é" * 128])
async def test_invalid_names_are_400_invalid_name(alice, name):
    answer = await alice.post(FOLDERS, json={"parent_id": "root", "name": name})
    assert answer.status == 400 and answer.body["error"]["code"] in ("invalid_name", "invalid_field"), answer.body
    if name:
        assert error_of(answer) == (400, "invalid_name")


@pytest.mark.parametrize("path", ["relative", "/a//b", "/a/", "//"])
async def test_paths_with_empty_segments_are_400(alice, path):
    assert error_of(await alice.post(FOLDERS, json={"path": path})) == (400, "invalid_name")
    assert error_of(await alice.get(f"/dropbox/v1/metadata?path={path}")) == (400, "invalid_name")


async def test_unknown_and_foreign_ids_are_404_and_the_root_cannot_move(gateway, http, alice):
    bob = await Api(http, gateway.url).signup()
    theirs = await mkdir(bob, "/Private")
    for answer in (
        await alice.get(f"{FOLDERS}/{theirs['folder_id']}"),
        await alice.get(f"{FOLDERS}/{theirs['folder_id']}/entries"),
        await alice.post(FOLDERS, json={"parent_id": theirs["folder_id"], "name": "x"}),
        await alice.post(FOLDERS, json={"parent_id": "not-an-id", "name": "x"}),
        await alice.patch(f"{FOLDERS}/{theirs['folder_id']}", json={"name": "Mine"}),
        await alice.delete(f"{FOLDERS}/{theirs['folder_id']}"),
        await alice.get(f"{FOLDERS}/{'0' * 32}"),
        await alice.get("/dropbox/v1/metadata?path=/Private"),
    ):
        assert error_of(answer) == (404, "not_found"), answer.body
    assert (await alice.patch(f"{FOLDERS}/root", json={"name": "x"})).status == 400
    assert (await alice.delete(f"{FOLDERS}/root")).status == 400


async def test_entries_are_folders_then_files_by_name_without_case_paged_by_a_cursor(alice):
    for name in ("b", "A", "c"):
        await mkdir(alice, f"/{name}")
    for name in ("z.txt", "B.txt", "a.txt"):
        await put_file(alice, name.encode(), name)
    seen, cursor, pages = [], None, 0
    while True:
        page = await alice.get(f"{FOLDERS}/root/entries?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status == 200, page.body
        seen += [(entry["type"], entry["name"]) for entry in page.body["entries"]]
        pages += 1
        cursor = page.body["cursor"]
        if cursor is None:
            break
    assert seen == [("folder", "A"), ("folder", "b"), ("folder", "c"), ("file", "a.txt"), ("file", "B.txt"),
                    ("file", "z.txt")]
    assert pages == 3
    assert error_of(await alice.get(f"{FOLDERS}/root/entries?cursor=v1.own.3")) == (400, "invalid_cursor")


async def test_an_upload_in_progress_is_no_entry_until_uploaded_but_knows_its_path(alice):
    data = os.urandom(100)
    started = await alice.post(FILES, json={**make_claim(data, CHUNK, file_name="big.bin"), "path": "/In/big.bin"})
    assert started.status == 201 and started.body["status"] == "uploading"
    assert started.body["path"] == "/In/big.bin" and started.body["type"] == "file"
    folder = (await alice.get("/dropbox/v1/metadata?path=/In")).body
    assert await names_in(alice, folder["folder_id"]) == []
    await put_chunks(alice, started.body["file_id"], data, CHUNK)
    done = (await alice.post(f"{FILES}/{started.body['file_id']}/complete")).body
    assert done["path"] == "/In/big.bin" and done["parent_id"] == folder["folder_id"] and done["name"] == "big.bin"
    assert await names_in(alice, folder["folder_id"]) == ["big.bin"]


async def test_add_takes_a_free_name_and_the_same_content_again_is_that_file(alice):
    first = await put_file(alice, b"one", "a.txt")
    second = await put_file(alice, b"two", "a.txt")
    assert second["name"] == "a (1).txt" and second["path"] == "/a (1).txt"
    again = await alice.post(FILES, json=make_claim(b"one", CHUNK, file_name="A.TXT"))
    assert again.status == 200 and again.body["file_id"] == first["file_id"]
    assert await names_in(alice) == ["a (1).txt", "a.txt"]


async def test_overwrite_makes_the_old_file_a_version_and_hands_over_its_shares(gateway, http, alice):
    bob = await Api(http, gateway.url).signup()
    old = await put_file(alice, b"old", "doc.txt")
    await alice.post(f"{FILES}/share", json={"file_id": old["file_id"], "users": [bob.username]})
    new = await put_file(alice, b"new", "doc.txt", mode="overwrite")
    assert new["name"] == "doc.txt" and new["file_id"] != old["file_id"]
    assert await names_in(alice) == ["doc.txt"]
    versions = (await alice.get(f"{FILES}/{new['file_id']}/versions")).body["versions"]
    assert [(v["file_id"], v["replaced_by"]) for v in versions] == [(old["file_id"], new["file_id"])]
    assert (await bob.get(f"{FILES}/{new['file_id']}")).status == 200  # the shares went to the new file
    assert (await bob.get(f"{FILES}/{new['file_id']}/versions")).status == 200
    assert (await bob.get(f"{FILES}/{old['file_id']}")).status == 200  # a version: for whoever reads its file
    listed = [f["file_id"] for f in (await alice.get(FILES)).body["files"]]
    assert listed == [new["file_id"]]  # versions are listed only by their own call


async def test_update_replaces_only_the_file_named_else_it_is_a_conflicted_copy(alice):
    base = await put_file(alice, b"v1", "notes.txt")
    mine = await put_file(alice, b"v2", "notes.txt", mode="update", replaces=base["file_id"])
    assert mine["name"] == "notes.txt"
    theirs = await put_file(alice, b"v3", "notes.txt", mode="update", replaces=base["file_id"])  # base is old now
    day = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert theirs["name"] == f"notes (conflicted copy {day}).txt" and theirs["path"] == f"/{theirs['name']}"
    wrong = await alice.post(FILES, json={**make_claim(b"v4", CHUNK, file_name="other.txt"), "mode": "update",
                                          "replaces": base["file_id"]})
    assert error_of(wrong) == (400, "invalid_replaces")
    assert (await alice.post(FILES, json={**make_claim(b"v4", CHUNK), "mode": "update"})).status == 400


async def test_a_folder_is_never_replaced_by_a_file(alice):
    await mkdir(alice, "/same")
    placed = await put_file(alice, b"file", "same", mode="overwrite")
    assert placed["name"] == "same (1)"


async def test_rename_and_move_keep_ids_and_refuse_cycles(alice):
    a = await mkdir(alice, "/a")
    b = await mkdir(alice, "/a/b")
    file = await put_file(alice, b"data", "f.txt", parent_id=b["folder_id"])
    assert file["path"] == "/a/b/f.txt"
    moved = await alice.patch(f"{FILES}/{file['file_id']}", json={"parent_id": "root", "name": "g.txt"})
    assert moved.status == 200 and moved.body["file_id"] == file["file_id"] and moved.body["path"] == "/g.txt"
    assert error_of(await alice.patch(f"{FOLDERS}/{a['folder_id']}", json={"parent_id": b["folder_id"]})) == (409, "cycle")
    assert error_of(await alice.patch(f"{FOLDERS}/{a['folder_id']}", json={"parent_id": a["folder_id"]})) == (409, "cycle")
    renamed = await alice.patch(f"{FOLDERS}/{a['folder_id']}", json={"name": "A2"})
    assert renamed.body["path"] == "/A2"
    assert (await alice.get(f"{FOLDERS}/{b['folder_id']}")).body["path"] == "/A2/b"  # moved with it
    await mkdir(alice, "/taken")
    assert error_of(await alice.patch(f"{FOLDERS}/{b['folder_id']}", json={"parent_id": "root", "name": "Taken"})) \
        == (409, "name_taken")
    auto = await alice.patch(f"{FOLDERS}/{b['folder_id']}", json={"parent_id": "root", "name": "taken", "autorename": True})
    assert auto.body["name"] == "taken (1)"
    assert (await alice.patch(f"{FILES}/{file['file_id']}", json={"name": "G.TXT"})).body["name"] == "G.TXT"  # its own name


async def test_copy_moves_no_bytes_lands_in_the_callers_tree_and_counts_toward_quota(gateway, http, alice):
    bob = await Api(http, gateway.url).signup()
    docs = await mkdir(alice, "/docs")
    file = await put_file(alice, b"shared bytes", "s.txt", parent_id=docs["folder_id"])
    own = await alice.post(f"{FILES}/{file['file_id']}/copy", json={"autorename": True})
    assert own.status == 201 and own.body["path"] == "/docs/s (1).txt"
    assert error_of(await alice.post(f"{FILES}/{file['file_id']}/copy", json={})) == (409, "name_taken")
    assert error_of(await bob.post(f"{FILES}/{file['file_id']}/copy", json={})) == (404, "not_found")
    await alice.post(f"{FILES}/share", json={"file_id": file["file_id"], "users": [bob.username]})
    theirs = await bob.post(f"{FILES}/{file['file_id']}/copy")
    assert theirs.status == 201 and theirs.body["path"] == "/s.txt" and theirs.body["uploaded_by"] == bob.username
    assert theirs.body["fingerprint"] == file["fingerprint"]
    assert (await bob.get("/dropbox/v1/users/me")).body["used_bytes"] == len(b"shared bytes")


async def test_trash_keeps_paths_restores_with_ids_and_remakes_parents(alice):
    folder = await mkdir(alice, "/proj/sub")
    inner = await put_file(alice, b"inner", "in.txt", parent_id=folder["folder_id"])
    proj = (await alice.get("/dropbox/v1/metadata?path=/proj")).body
    assert (await alice.delete(f"{FOLDERS}/{proj['folder_id']}")).status == 204
    assert (await alice.get(f"{FILES}/{inner['file_id']}")).status == 404  # trashed: 404 to v1 calls
    trash = (await alice.get("/dropbox/v1/trash")).body
    assert [(e["type"], e["path"]) for e in trash["entries"]] == [("folder", "/proj")] and trash["cursor"] is None
    assert "deleted_at" in trash["entries"][0]
    restored = await alice.post(f"/dropbox/v1/trash/{proj['folder_id']}/restore")
    assert restored.status == 200 and restored.body["folder_id"] == proj["folder_id"] and restored.body["path"] == "/proj"
    assert (await alice.get(f"{FILES}/{inner['file_id']}")).body["path"] == "/proj/sub/in.txt"

    # A file whose folder is gone comes back with the folder made again; a taken name gets a free one.
    assert (await alice.delete(f"{FILES}/{inner['file_id']}")).status == 204
    await alice.delete(f"{FOLDERS}/{proj['folder_id']}")
    await mkdir(alice, "/proj")  # a new folder of the same name
    back = await alice.post(f"/dropbox/v1/trash/{inner['file_id']}/restore")
    assert back.status == 200 and back.body["path"] == "/proj/sub/in.txt" and back.body["file_id"] == inner["file_id"]
    old_proj = await alice.post(f"/dropbox/v1/trash/{proj['folder_id']}/restore")
    assert old_proj.body["path"] == "/proj (1)"


async def test_a_trashed_files_shares_and_links_end_and_deleting_for_good_frees_the_quota(gateway, http, alice):
    bob = await Api(http, gateway.url).signup()
    file = await put_file(alice, b"x" * 1000, "gone.bin")
    await alice.post(f"{FILES}/share", json={"file_id": file["file_id"], "users": [bob.username]})
    link = (await alice.post(f"{FILES}/{file['file_id']}/links", json={})).body
    await alice.delete(f"{FILES}/{file['file_id']}")
    assert (await bob.get(f"{FILES}/{file['file_id']}")).status == 404
    assert (await bob.get(f"{FILES}/shared")).body["files"] == []
    assert (await Api(alice.session, alice.base_url).get(f"/dropbox/v1/links/{link['url'].rsplit('/', 1)[1]}")).status == 404
    assert (await alice.get("/dropbox/v1/users/me")).body["used_bytes"] == 1000  # the trash counts
    await alice.post(f"/dropbox/v1/trash/{file['file_id']}/restore")
    assert (await bob.get(f"{FILES}/{file['file_id']}")).status == 404  # a restore does not bring shares back
    await alice.delete(f"{FILES}/{file['file_id']}")
    assert (await alice.delete(f"/dropbox/v1/trash/{file['file_id']}")).status == 204
    assert (await alice.get("/dropbox/v1/users/me")).body["used_bytes"] == 0
    assert error_of(await alice.delete(f"/dropbox/v1/trash/{file['file_id']}")) == (404, "not_found")


async def test_restoring_a_version_makes_a_new_current_file_and_the_current_one_a_version(alice):
    first = await put_file(alice, b"first", "r.txt")
    second = await put_file(alice, b"second", "r.txt", mode="overwrite")
    restored = await alice.post(f"{FILES}/{first['file_id']}/restore")
    assert restored.status == 200 and restored.body["fingerprint"] == first["fingerprint"]
    assert restored.body["path"] == "/r.txt" and restored.body["file_id"] not in (first["file_id"], second["file_id"])
    versions = (await alice.get(f"{FILES}/{restored.body['file_id']}/versions")).body["versions"]
    assert [v["file_id"] for v in versions] == [second["file_id"], first["file_id"]]
    assert error_of(await alice.post(f"{FILES}/{restored.body['file_id']}/restore")) == (409, "not_a_version")


async def test_search_finds_own_folders_and_uploaded_files_by_part_of_the_name(gateway, http, alice):
    await mkdir(alice, "/Quarterly Reports")
    await put_file(alice, b"r", "report-q1.PDF", path="/Quarterly Reports/report-q1.PDF")
    await put_file(alice, b"s", "summary.txt")
    bob = await Api(http, gateway.url).signup()
    await put_file(bob, b"b", "bob report.txt")
    found = (await alice.get("/dropbox/v1/search?q=REPORT")).body["entries"]
    assert sorted(e["path"] for e in found) == ["/Quarterly Reports", "/Quarterly Reports/report-q1.PDF"]
    assert len((await alice.get("/dropbox/v1/search?q=r&limit=1")).body["entries"]) == 1
    assert (await alice.get("/dropbox/v1/search?q=")).status == 400
    assert (await alice.get("/dropbox/v1/search?q=100%25")).body["entries"] == []  # % is a character


async def test_the_config_names_the_retention_times(gateway, http):
    config = (await Api(http, gateway.url).get("/dropbox/v1/config")).body
    assert config["trash_retention"] == config["version_retention"] == 30 * 24 * 3600


async def test_the_trash_pages_newest_first_by_its_cursor(gateway, alice):
    ids = []
    for n in range(5):
        ids.append((await put_file(alice, b"%d" % n, f"t{n}.txt"))["file_id"])
        gateway.clock.advance(1)
        assert (await alice.delete(f"{FILES}/{ids[-1]}")).status == 204
    seen, cursor = [], None
    while True:
        page = await alice.get("/dropbox/v1/trash?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status == 200 and len(page.body["entries"]) <= 2
        seen += [entry["file_id"] for entry in page.body["entries"]]
        cursor = page.body["cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert error_of(await alice.get("/dropbox/v1/trash?cursor=v1.own.1")) == (400, "invalid_cursor")


async def test_every_tree_call_on_someone_elses_file_or_entry_is_404(gateway, http, alice):
    bob = await Api(http, gateway.url).signup()
    file = await put_file(alice, b"alice's", "mine.txt")
    await put_file(alice, b"alice's 2", "mine.txt", mode="overwrite")
    folder = await mkdir(alice, "/mine")
    for answer in (
        await bob.patch(f"{FILES}/{file['file_id']}", json={"name": "x"}),
        await bob.get(f"{FILES}/{file['file_id']}/versions"),
        await bob.post(f"{FILES}/{file['file_id']}/restore"),
        await bob.post(f"{FILES}/{file['file_id']}/copy"),
        await bob.post(FILES, json={**make_claim(b"b", CHUNK), "parent_id": folder["folder_id"]}),
        await bob.post(f"/dropbox/v1/trash/{folder['folder_id']}/restore"),
        await bob.delete(f"/dropbox/v1/trash/{folder['folder_id']}"),
    ):
        assert error_of(answer) == (404, "not_found"), answer.body
    await alice.delete(f"{FOLDERS}/{folder['folder_id']}")
    assert error_of(await bob.post(f"/dropbox/v1/trash/{folder['folder_id']}/restore")) == (404, "not_found")
    assert (await bob.get("/dropbox/v1/trash")).body == {"entries": [], "cursor": None}
    assert (await bob.get("/dropbox/v1/search?q=mine")).body == {"entries": []}


async def test_a_file_whose_folder_went_to_the_trash_while_it_uploaded_lands_in_the_root(alice):
    data = os.urandom(100)
    folder = await mkdir(alice, "/going")
    started = await alice.post(FILES, json={**make_claim(data, CHUNK, file_name="late.bin"), "parent_id": folder["folder_id"]})
    assert started.body["path"] == "/going/late.bin"
    await alice.delete(f"{FOLDERS}/{folder['folder_id']}")
    await put_chunks(alice, started.body["file_id"], data, CHUNK)
    done = await alice.post(f"{FILES}/{started.body['file_id']}/complete")
    assert done.status == 200 and done.body["path"] == "/late.bin"


async def test_a_shared_file_shows_its_reader_no_path_of_the_owners(gateway, http, alice):
    bob = await Api(http, gateway.url).signup()
    file = await put_file(alice, b"x", "secret-project.txt", path="/Secret Project/secret-project.txt")
    await alice.post(f"{FILES}/share", json={"file_id": file["file_id"], "users": [bob.username]})
    seen = (await bob.get(f"{FILES}/{file['file_id']}")).body
    assert seen["path"] is None and seen["parent_id"] is None and seen["name"] == "secret-project.txt"
    [listed] = (await bob.get(f"{FILES}/shared")).body["files"]
    assert listed["path"] is None
