"""`dbx` and the tree (contract v1.2): mkdir, mv, cp, rm, ls PATH, trash, restore, versions, search,
upload --to and -r, download -r.

The fast tests run the real `dbx` command against the gateway in-process (on the in-memory store),
and count the requests of a whole folder's upload with the client's own code; the real-parts tests
at the end round-trip a folder through SeaweedFS and the nginx CDN tier.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import aiohttp
import aiohttp.test_utils
import aiohttp.web
import pytest

from client.api import GatewayClient
from client.folders import TreeOptions, TreeUpload, read_tree
from protocol.paths import name_key
from tests.app_fixtures import make_app  # noqa: F401 - the gateway in-process, on the in-memory store
from tests.harness import Api
from tests.test_client import CHUNK, PASSWORD, Dbx, cdn_stack, cdn_user, logged_in, no_traceback, sha256_file  # noqa: F401

MIB = 1024 * 1024


@pytest.fixture
async def app_stack(make_app):
    return await make_app(chunk_size=CHUNK)


@pytest.fixture
async def dbx(app_stack, http, tmp_path) -> Dbx:
    return await logged_in(app_stack.url, http, tmp_path / "home")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(listing: dict) -> list[str]:
    return [entry["name"] for entry in listing["entries"]]


async def ok(dbx: Dbx, *args: str):
    run = await dbx(*args)
    assert run.rc == 0, run
    no_traceback(run)
    return run


# -- the tree, by path --------------------------------------------------------------------------


async def test_mkdir_mv_cp_rm_and_restore_by_path(dbx, tmp_path):
    made = (await ok(dbx, "mkdir", "/docs/reports", "--json")).json()
    assert (made["created"], made["path"], made["type"]) == (True, "/docs/reports", "folder")
    again = await ok(dbx, "mkdir", "/docs/reports/")
    assert "there already" in again.stdout

    source = write(tmp_path / "a.txt", b"hello tree\n" * 100)
    up = (await ok(dbx, "upload", str(source), "--to", "/docs", "--json", "--quiet")).json()
    assert up["remote_path"] == "/docs/a.txt"
    file_id = up["file_id"]

    listing = (await ok(dbx, "ls", "/docs", "--json")).json()
    assert listing["folder"]["path"] == "/docs" and names(listing) == ["reports", "a.txt"]  # folders first
    long = (await ok(dbx, "ls", "/docs")).stdout.splitlines()
    assert long[0].startswith("d") and long[0].endswith("reports/")
    assert long[1].startswith("-") and "1.1 KiB" in long[1] and "UTC" in long[1] and long[1].endswith("a.txt")

    moved = (await ok(dbx, "mv", "/docs/a.txt", "/docs/reports", "--json")).json()
    assert (moved["file_id"], moved["path"]) == (file_id, "/docs/reports/a.txt")
    renamed = (await ok(dbx, "mv", "/docs/reports/a.txt", "/docs/reports/b.txt", "--json")).json()
    assert (renamed["file_id"], renamed["path"]) == (file_id, "/docs/reports/b.txt")
    by_id = (await ok(dbx, "mv", file_id, "/docs/reports/B.txt", "--json")).json()  # the same name, spelt anew
    assert (by_id["file_id"], by_id["path"]) == (file_id, "/docs/reports/B.txt")

    copy = (await ok(dbx, "cp", "/docs/reports/B.txt", "/docs", "--json")).json()
    assert copy["path"] == "/docs/B.txt" and copy["file_id"] != file_id and copy["fingerprint"] == up["fingerprint"]
    taken = await dbx("cp", "/docs/reports/B.txt", "/docs")
    assert taken.rc == 7 and "--autorename" in taken.stderr, taken
    free = (await ok(dbx, "cp", "/docs/reports/B.txt", "/docs", "--autorename", "--json")).json()
    assert free["path"] == "/docs/B (1).txt"
    tree_copy = (await ok(dbx, "cp", "-r", "/docs/reports", "/archive", "--json")).json()
    assert tree_copy["path"] == "/archive"
    assert names((await ok(dbx, "ls", "/archive", "--json")).json()) == ["B.txt"]

    cycle = await dbx("mv", "/docs", "/docs/reports")
    assert cycle.rc == 7 and "itself" in cycle.stderr, cycle
    folder = await dbx("rm", "/docs")
    assert folder.rc == 2 and "rm -r" in folder.stderr, folder
    await ok(dbx, "rm", "-r", "/docs")
    gone = await dbx("ls", "/docs")
    assert gone.rc == 6 and "/docs was not found" in gone.stderr, gone

    trash = (await ok(dbx, "trash", "--json")).json()["entries"]
    assert [(e["type"], e["path"]) for e in trash][:1] == [("folder", "/docs")] and trash[0]["deleted_at"]
    assert "/docs" in (await ok(dbx, "trash")).stdout
    await ok(dbx, "restore", "/docs")
    assert names((await ok(dbx, "ls", "/docs/reports", "--json")).json()) == ["B.txt"]

    found = (await ok(dbx, "search", "b (1)", "--json")).json()["entries"]
    assert [e["path"] for e in found] == ["/docs/B (1).txt"]
    info = await ok(dbx, "info", "/docs/reports/B.txt")
    assert file_id in info.stdout


async def test_paths_are_checked_before_asking_and_unknown_ones_are_exit_6(dbx):
    for bad in ("/a//b", "/a/\x01", "docs"):
        run = await dbx("mkdir", bad)
        assert run.rc == 2 and "dbx: error:" in run.stderr, run
        no_traceback(run)
    missing = await dbx("rm", "/nothing/here.txt", "--json")
    assert missing.rc == 6 and missing.json_lines()[0]["error"]["code"] == "not_found", missing
    guess = await dbx("info", "report.pdf")
    assert guess.rc == 6 and "did you mean /report.pdf?" in guess.stderr, guess
    assert (await dbx("rm", "/")).rc == 2


async def test_overwrite_keeps_a_version_that_downloads_and_restores(dbx, tmp_path):
    source = write(tmp_path / "notes.txt", b"first\n")
    first = (await ok(dbx, "upload", str(source), "--to", "/", "--json", "--quiet")).json()
    write(source, b"second, longer\n")
    second = (await ok(dbx, "upload", str(source), "--to", "/", "--overwrite", "--json", "--quiet")).json()
    assert second["remote_path"] == "/notes.txt" and second["file_id"] != first["file_id"]

    versions = (await ok(dbx, "versions", "/notes.txt", "--json")).json()
    assert versions["file"]["file_id"] == second["file_id"]
    assert [v["file_id"] for v in versions["versions"]] == [first["file_id"]]
    table = (await ok(dbx, "versions", "/notes.txt")).stdout
    assert first["file_id"] in table and "current" in table

    restored = (await ok(dbx, "restore", first["file_id"], "--json")).json()
    assert restored["path"] == "/notes.txt" and restored["fingerprint"] == first["fingerprint"]
    after = (await ok(dbx, "versions", "/notes.txt", "--json")).json()
    assert second["file_id"] in [v["file_id"] for v in after["versions"]]


# -- whole folders --------------------------------------------------------------------------------


def make_folder(root: Path) -> dict[str, bytes]:
    """A folder of small files, one chunked file, an empty folder, two names that are one name to the server,
    and a name the server refuses; the bytes each remote path should hold."""
    files = {
        "a.txt": b"a" * 4096,
        "sub/b.bin": os.urandom(MIB + 17),  # over the inline limit: the chunked path
        "sub/deeper/c.txt": os.urandom(9000),
        "Report.pdf": b"upper",
        "report.PDF": b"lower",
    }
    for relative, data in files.items():
        write(root / relative, data)
    (root / "empty").mkdir()
    write(root / "bad\\name.txt", b"refused")
    return {"a.txt": files["a.txt"], "sub/b.bin": files["sub/b.bin"], "sub/deeper/c.txt": files["sub/deeper/c.txt"],
            "Report.pdf": b"upper", "report (1).PDF": b"lower"}


def test_reading_a_folder_names_clashes_apart_and_leaves_out_what_the_server_refuses(tmp_path):
    make_folder(tmp_path / "top")
    tree = read_tree(str(tmp_path / "top"))
    assert tree.folders == ["", "empty", "sub", "sub/deeper"]
    assert sorted((f.folder, f.name) for f in tree.files) == [
        ("", "Report.pdf"), ("", "a.txt"), ("", "report (1).PDF"), ("sub", "b.bin"), ("sub/deeper", "c.txt")]
    assert [Path(path).name for path, _ in tree.invalid] == ["bad\\name.txt"]
    assert len({name_key(f.name) for f in tree.files if f.folder == ""}) == 3


async def test_upload_r_makes_each_folder_once_and_a_rerun_sends_nothing(app_stack, http, tmp_path):
    expected = make_folder(tmp_path / "top")
    api = await Api(http, app_stack.url).signup(password=PASSWORD)
    requests: Counter[tuple[str, str]] = Counter()

    async def count(session, context, params) -> None:
        path = params.url.path
        requests[params.method, "entries" if path.endswith("/entries") else path] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(count)
    lines: list[dict] = []
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = GatewayClient(app_stack.url, api.token, session=session)
        config = await client.config()
        options = TreeOptions(jobs=4, quiet=True)
        summary = await TreeUpload(client, config, options, lines.append).run(str(tmp_path / "top"), "/backup/top")
        assert (summary.files, summary.done, summary.failed, summary.folders_made) == (5, 5, 1, 4)
        assert summary.exit_code == 7
        assert requests["POST", "/dropbox/v1/folders"] == 4  # one per folder, none per file
        assert requests["POST", "/dropbox/v1/files/batch"] == 1  # the four small files together
        assert requests["POST", "/dropbox/v1/files"] == 1  # the chunked one
        assert requests["GET", "/dropbox/v1/metadata"] == 0
        hows = Counter(line.get("how") for line in lines if line["ok"])
        assert hows == {"inline": 4, "chunked": 1}
        for relative, data in expected.items():
            entry = await client.metadata(f"/backup/top/{relative}")
            assert entry["file_size"] == len(data)

        requests.clear()
        lines.clear()
        again = await TreeUpload(client, config, options, lines.append).run(str(tmp_path / "top"), "/backup/top")
        assert (again.done, again.unchanged, again.folders_made) == (0, 5, 0)
        assert requests["POST", "/dropbox/v1/files"] == 0 and requests["POST", "/dropbox/v1/folders"] == 4


async def test_upload_r_sends_each_small_file_alone_to_a_gateway_without_batches(app_stack, http, tmp_path):
    """A gateway that has no batch call (an older one) answers it 404: each small file then goes alone, as the
    contract's inline upload, and the batch call is not tried again."""
    expected = make_folder(tmp_path / "top")
    api = await Api(http, app_stack.url).signup(password=PASSWORD)
    requests: Counter[str] = Counter()

    async def older(request: aiohttp.web.Request) -> aiohttp.web.Response:  # an older gateway's answer
        requests["batch"] += 1
        return aiohttp.web.json_response({"error": {"code": "not_found", "message": "no such file"}}, status=404)

    app = aiohttp.web.Application()
    app.router.add_post("/dropbox/v1/files/batch", older)
    app.router.add_route("*", "/{rest:.*}", proxy_to(app_stack.url))
    server = aiohttp.test_utils.TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            client = GatewayClient(str(server.make_url("")), api.token, session=session)
            config = await client.config()
            lines: list[dict] = []
            summary = await TreeUpload(client, config, TreeOptions(jobs=1, quiet=True), lines.append).run(
                str(tmp_path / "top"), "/backup/top")
            assert (summary.done, summary.failed) == (5, 1) and requests["batch"] == 1
            for relative, data in expected.items():
                assert (await client.metadata(f"/backup/top/{relative}"))["file_size"] == len(data)
    finally:
        await server.close()


def proxy_to(base: str):
    """A handler that sends the request on to ``base`` and answers what it answers."""

    async def forward(request: aiohttp.web.Request) -> aiohttp.web.Response:
        headers = {name: value for name, value in request.headers.items() if name.lower() not in ("host",)}
        async with aiohttp.ClientSession() as session, session.request(
                request.method, base + request.path_qs, headers=headers, data=await request.read(),
                allow_redirects=False) as answer:
            return aiohttp.web.Response(status=answer.status, body=await answer.read(),
                                        headers={"Content-Type": answer.headers.get("Content-Type", "")})

    return forward


async def test_dbx_upload_r_into_a_folder_says_what_it_did(dbx, tmp_path):
    top = tmp_path / "photos"
    for number in range(12):
        write(top / f"day-{number % 3}" / f"img-{number}.jpg", os.urandom(4096 + number))
    run = await dbx("upload", "-r", str(top), "--to", "/backup", "--json", "--quiet")
    assert run.rc == 0, run
    *files, summary = run.json_lines()
    assert len(files) == 12 and all(line["ok"] and line["remote_path"].startswith("/backup/photos/day-")
                                    for line in files)
    assert summary["summary"]["done"] == 12 and summary["summary"]["folders_made"] == 4
    human = await ok(dbx, "upload", "-r", str(top), "--to", "/backup")
    assert "0 of 12 files uploaded" in human.stdout and "12 unchanged" in human.stdout
    listing = (await ok(dbx, "ls", "/backup/photos/day-1", "--json")).json()
    assert names(listing) == ["img-1.jpg", "img-10.jpg", "img-4.jpg", "img-7.jpg"]
    plain = await dbx("upload", str(top))
    assert plain.rc == 2 and "-r" in plain.stderr, plain


# -- real parts: SeaweedFS and the nginx CDN tier ---------------------------------------------------


async def test_a_folder_round_trips_through_the_store_and_the_cdn(cdn_user, tmp_path):
    expected = make_folder(tmp_path / "top")
    up = await cdn_user("upload", "-r", str(tmp_path / "top"), "--to", "/backup", "--json", "--quiet")
    assert up.rc == 7, up  # the one name the server refuses
    assert up.json_lines()[-1]["summary"]["done"] == 5

    target = tmp_path / "back"
    down = await cdn_user("download", "-r", "/backup/top", "-o", str(target), "--json", "--quiet")
    assert down.rc == 0, down
    for relative, data in expected.items():
        assert (target / relative).read_bytes() == data
    assert (target / "empty").is_dir()
    again = await cdn_user("download", "-r", "/backup/top", "-o", str(target))
    assert again.rc == 10 and "--force" in again.stderr, again  # nothing is overwritten without --force

    version_source = write(tmp_path / "v.txt", b"old content")
    old = (await ok(cdn_user, "upload", str(version_source), "--to", "/backup", "--json", "--quiet")).json()
    write(version_source, b"new content!")
    await ok(cdn_user, "upload", str(version_source), "--to", "/backup", "--overwrite", "--quiet")
    versions = (await ok(cdn_user, "versions", "/backup/v.txt", "--json")).json()["versions"]
    assert [v["file_id"] for v in versions] == [old["file_id"]]
    saved = tmp_path / "old.txt"
    await ok(cdn_user, "download", "-o", str(saved), "--", old["file_id"])
    assert saved.read_bytes() == b"old content"
    current = tmp_path / "current.txt"
    await ok(cdn_user, "download", "/backup/v.txt", "-o", str(current))
    assert sha256_file(current) == sha256_file(version_source)


def test_cli_parses_the_tree_commands():
    from client.cli import build_parser

    parser = build_parser()
    mv = parser.parse_args(["mv", "/a", "/b", "/c", "--autorename"])
    assert (mv.sources, mv.dest, mv.autorename) == (["/a", "/b"], "/c", True)
    up = parser.parse_args(["upload", "-r", "dir", "--to", "/x", "-j", "16", "--overwrite"])
    assert (up.recursive, up.to, up.jobs, up.overwrite) == (True, "/x", 16, True)
    assert parser.parse_args(["ls", "/docs"]).target == "/docs"
    assert parser.parse_args(["ls", "shared"]).target == "shared"
    rm = parser.parse_args(["rm", "-r", "/a", "id"])
    assert (rm.recursive, rm.targets) == (True, ["/a", "id"])


@pytest.mark.parametrize("text,path", [("/", "/"), ("//", "/"), ("/docs/", "/docs"), ("/a/b c/d.txt", "/a/b c/d.txt"),
                                       ("/Übung/ß", "/Übung/ß")])
def test_paths_as_typed_become_the_contracts(text, path):
    from client.remote import remote_path

    assert remote_path(text) == path


@pytest.mark.parametrize("text", ["docs", "/a//b", "/a/../b", "/a/.", "/a\\b", "/x/\x7f", "/" + "n" * 256])
def test_paths_the_contract_refuses_are_usage_errors_that_say_why(text):
    from client.errors import UsageError
    from client.remote import remote_path

    with pytest.raises(UsageError) as refused:
        remote_path(text)
    assert "not a path dbx can use" in refused.value.message and "\x7f" not in refused.value.message


def test_ls_long_format_aligns_sizes_and_marks_folders():
    from client.output import entry_lines

    lines = entry_lines([
        {"type": "folder", "name": "photos", "modified_at": "2026-12-04T15:04:00Z"},
        {"type": "file", "name": "a.txt", "file_size": 12, "modified_at": "2026-12-04T15:05:00Z"},
        {"type": "file", "name": "big\u202e.iso", "file_size": 3 * MIB, "modified_at": "2026-12-03T01:00:00Z"},
    ])
    assert lines == ["d        -  2026-12-04 15:04 UTC  photos/",
                     "-     12 B  2026-12-04 15:05 UTC  a.txt",
                     "-  3.0 MiB  2026-12-03 01:00 UTC  big?.iso"]


def test_an_id_that_looks_like_a_name_gets_a_hint():
    from client.remote import not_found

    assert "did you mean /report.pdf?" in not_found("report.pdf", "http://x").message
    assert "did you mean" not in not_found("/report.pdf", "http://x").message
