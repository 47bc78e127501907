"""The tree in the browser (contract v1.2, "The web app, v1.2"), in a real Chromium against the real
stack: folders and their breadcrumb, the folder in the URL, uploads of files and whole folders into
the folder shown, rename, move, delete to the trash and restore, versions, search; with the
contract's accessible names."""
from __future__ import annotations

import re

from playwright.async_api import expect

from tests.browser import (  # noqa: F401 - fixtures
    WEB_CHUNK_SIZE,
    WebApp,
    browser,
    file_payload,
    playwright_driver,
    web_gateway,
)
from tests.harness import Api, make_claim, put_chunks
from tests.test_web_accessibility import violations
from tests.test_web_everyday import session_token


async def new_folder(app: WebApp, name: str) -> None:
    await app.page.get_by_role("button", name="New folder").click()
    await app.page.get_by_label("Folder name").fill(name)
    await app.page.get_by_role("button", name="Create", exact=True).click()
    await expect(folder_link(app, name)).to_be_visible()


def folder_link(app: WebApp, name: str):
    return app.file_row(name).get_by_role("link", name=name, exact=True)


def breadcrumb(app: WebApp):
    return app.page.get_by_role("navigation", name="Breadcrumb")


async def owner_api(app: WebApp, http) -> Api:
    return Api(http, app.base_url, await session_token(app.page))


async def path_of(api: Api, path: str) -> dict:
    answer = await api.get(f"/dropbox/v1/metadata?path={path}")
    assert answer.status == 200, (path, answer.body)
    return answer.body


async def test_folders_breadcrumb_and_the_folder_in_the_url(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    await expect(breadcrumb(app).get_by_role("link")).to_have_text(["All files"])
    await new_folder(app, "Projects")
    await folder_link(app, "Projects").click()
    api = await owner_api(app, http)
    projects = await path_of(api, "/Projects")
    await expect(app.page).to_have_url(f"{web_gateway.url}/#/folder/{projects['folder_id']}")
    await expect(breadcrumb(app).get_by_role("link")).to_have_text(["All files", "Projects"])
    await new_folder(app, "2026")
    await folder_link(app, "2026").click()
    await expect(breadcrumb(app).get_by_role("link")).to_have_text(["All files", "Projects", "2026"])
    await expect(breadcrumb(app).get_by_role("link", name="2026")).to_have_attribute("aria-current", "page")

    # Files go into the folder shown.
    await app.pick(file_payload("plan.txt", b"the plan", "text/plain"))
    await app.wait_uploaded("plan.txt")
    assert (await path_of(api, "/Projects/2026/plan.txt"))["file_size"] == 8

    # Back, forward and reload keep to the URL; a folder's URL opens it (a bookmark).
    await app.page.go_back()
    await expect(breadcrumb(app).get_by_role("link")).to_have_text(["All files", "Projects"])
    await expect(folder_link(app, "2026")).to_be_visible()
    await app.page.go_forward()
    await expect(app.file_row("plan.txt")).to_have_count(1)
    await app.page.reload()
    await expect(breadcrumb(app).get_by_role("link")).to_have_text(["All files", "Projects", "2026"])
    await expect(app.file_row("plan.txt")).to_contain_text("Uploaded")
    bookmark = app.page.url
    await breadcrumb(app).get_by_role("link", name="All files").click()
    await expect(app.page).to_have_url(f"{web_gateway.url}/#/")
    await expect(folder_link(app, "Projects")).to_be_visible()
    await expect(app.file_row("plan.txt")).to_have_count(0)
    other_tab = await app.page.context.new_page()
    await other_tab.goto(bookmark)
    await expect(other_tab.locator("#my-files").get_by_role("row").filter(has_text="plan.txt")).to_have_count(1)
    assert not app.problems


async def test_upload_a_whole_folder_with_its_subfolders(browser, web_gateway, http, tmp_path):
    album = tmp_path / "album"
    (album / "day 2").mkdir(parents=True)
    (album / "a.txt").write_bytes(b"first")
    (album / "day 2" / "b.txt").write_bytes(b"second")
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    await new_folder(app, "Trips")
    await folder_link(app, "Trips").click()
    await expect(breadcrumb(app).get_by_role("link")).to_have_text(["All files", "Trips"])
    await app.page.get_by_label("Upload folder").set_input_files(str(album))
    for name in ("a.txt", "b.txt"):
        bar = app.page.get_by_role("progressbar", name=f"Upload of {name}")
        await expect(bar).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    api = await owner_api(app, http)
    assert (await path_of(api, "/Trips/album/a.txt"))["file_size"] == 5
    assert (await path_of(api, "/Trips/album/day 2/b.txt"))["file_size"] == 6
    await expect(folder_link(app, "album")).to_be_visible()
    await folder_link(app, "album").click()
    await expect(folder_link(app, "day 2")).to_be_visible()
    await expect(app.file_row("a.txt")).to_contain_text("Uploaded")
    assert not app.problems


async def test_rename_move_delete_to_the_trash_and_restore(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    await new_folder(app, "Archive")
    await app.pick(file_payload("draft.txt", b"words", "text/plain"))
    await app.wait_uploaded("draft.txt")

    await app.file_row("draft.txt").get_by_role("button", name="Rename").click()
    dialog = app.page.get_by_role("dialog")
    await dialog.get_by_label("New name").fill("final.txt")
    await dialog.get_by_role("button", name="Save").click()
    await expect(app.file_row("final.txt")).to_have_count(1)
    await expect(app.file_row("draft.txt")).to_have_count(0)

    await app.file_row("final.txt").get_by_role("button", name="Move").click()
    dialog = app.page.get_by_role("dialog")
    await dialog.get_by_role("button", name="Archive", exact=True).click()
    await expect(dialog).to_contain_text("Archive")
    await dialog.get_by_role("button", name="Move here").click()
    await expect(dialog).to_have_count(0)
    await expect(app.file_row("final.txt")).to_have_count(0)
    api = await owner_api(app, http)
    moved = await path_of(api, "/Archive/final.txt")

    # A folder goes to the trash with what it holds, and comes back with it.
    await app.file_row("Archive").get_by_role("button", name="Delete").click()
    await app.page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(folder_link(app, "Archive")).to_have_count(0)
    assert (await api.get(f"/dropbox/v1/files/{moved['file_id']}")).status == 404
    await app.page.get_by_role("link", name="Trash").click()
    await expect(app.page).to_have_url(f"{web_gateway.url}/#/trash")
    row = app.page.locator("#trash").get_by_role("row").filter(has_text="Archive")
    await row.get_by_role("button", name="Restore").click()
    await expect(app.page.locator("#trash").get_by_role("status")).to_contain_text("Restored")
    await expect(row).to_have_count(0)
    await app.page.go_back()
    await expect(folder_link(app, "Archive")).to_be_visible()
    assert (await path_of(api, "/Archive/final.txt"))["file_id"] == moved["file_id"]
    assert not app.problems


async def test_versions_restore_and_search(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    await app.pick(file_payload("report.txt", b"version one", "text/plain"))
    await app.wait_uploaded("report.txt")
    api = await owner_api(app, http)
    # A second version, as dbx or a sync client writes it (mode overwrite).
    data = b"version two!"
    second = await api.post("/dropbox/v1/files", json={
        **make_claim(data, WEB_CHUNK_SIZE, file_name="report.txt"), "mode": "overwrite"})
    assert second.status == 201, second.body
    assert set(await put_chunks(api, second.body["file_id"], data, WEB_CHUNK_SIZE)) == {200}
    done = await api.post(f"/dropbox/v1/files/{second.body['file_id']}/complete")
    assert done.status == 200 and done.body["status"] == "uploaded", done.body
    await app.page.reload()
    await expect(app.file_row("report.txt")).to_contain_text("12 B")

    await app.file_row("report.txt").get_by_role("button", name="Versions").click()
    dialog = app.page.get_by_role("dialog")
    versions = dialog.get_by_role("row").filter(has=app.page.get_by_role("button", name="Restore"))
    await expect(versions).to_have_count(1)
    await expect(versions).to_contain_text("11 B")
    await versions.get_by_role("button", name="Restore").click()
    await expect(dialog.get_by_role("status")).to_contain_text("current again")
    current = await path_of(api, "/report.txt")
    assert current["file_size"] == 11 and current["file_id"] != second.body["file_id"]
    await app.page.keyboard.press("Escape")
    await expect(app.file_row("report.txt")).to_contain_text("11 B")

    await app.page.get_by_role("searchbox", name="Search").fill("REPO")
    await app.page.get_by_role("searchbox", name="Search").press("Enter")
    await expect(app.page).to_have_url(re.compile(r"#/search\?q=REPO$"))
    await expect(app.file_row("report.txt")).to_contain_text("in /")
    await app.page.reload()
    await expect(app.file_row("report.txt")).to_have_count(1)
    await expect(app.page.get_by_role("searchbox", name="Search")).to_have_value("REPO")
    assert not app.problems


async def test_the_tree_screens_have_no_accessibility_violation(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    found: dict[str, list[str]] = {}

    async def check(screen: str) -> None:
        problems = await violations(app.page)
        if problems:
            found[screen] = problems

    await new_folder(app, "Photos")
    await app.pick(file_payload("list.txt", b"milk", "text/plain"))
    await app.wait_uploaded("list.txt")
    await app.page.get_by_role("button", name="New folder").click()
    await check("folder with entries, new folder form")
    await app.file_row("list.txt").get_by_role("button", name="Rename").click()
    await check("rename dialog")
    await app.page.keyboard.press("Escape")
    await app.file_row("list.txt").get_by_role("button", name="Move").click()
    await expect(app.page.get_by_role("dialog").get_by_role("button", name="Photos")).to_be_visible()
    await check("move dialog")
    await app.page.keyboard.press("Escape")
    await app.file_row("list.txt").get_by_role("button", name="Versions").click()
    await expect(app.page.get_by_role("dialog")).to_contain_text("No earlier versions")
    await check("versions dialog")
    await app.page.keyboard.press("Escape")
    await folder_link(app, "Photos").click()
    await expect(breadcrumb(app).get_by_role("link")).to_have_text(["All files", "Photos"])
    await check("a folder")
    await app.page.get_by_role("searchbox", name="Search").fill("list")
    await app.page.get_by_role("searchbox", name="Search").press("Enter")
    await expect(app.file_row("list.txt")).to_have_count(1)
    await check("search results")
    await app.file_row("list.txt").get_by_role("button", name="Delete").click()
    await app.page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    # The row goes once the gateway has answered the DELETE: only then is the file in the trash to list.
    await expect(app.file_row("list.txt")).to_have_count(0)
    await app.page.get_by_role("link", name="Trash").click()
    await expect(app.page.locator("#trash").get_by_role("row").filter(has_text="list.txt")).to_have_count(1)
    await check("trash")
    assert not found, found


async def test_a_dropped_folder_lands_with_its_subfolders_in_the_folder_shown(browser, web_gateway, http):
    """A drop as Chromium hands it over: DataTransfer items whose entries (webkitGetAsEntry) are read
    through, batch by batch. Playwright cannot drop a real folder, so the entries are made in the page
    (over real File objects); everything from the page's drop handler on is the app's own."""
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    await new_folder(app, "Inbox")
    await folder_link(app, "Inbox").click()
    await expect(breadcrumb(app).get_by_role("link")).to_have_text(["All files", "Inbox"])
    await app.page.evaluate("""() => {
        const file = (name, text) => ({ isFile: true, isDirectory: false, name,
            file: (ok) => ok(new File([text], name, { type: "text/plain" })) });
        const folder = (name, children) => ({ isFile: false, isDirectory: true, name,
            createReader: () => {
                // Two batches, then an empty one, as readEntries answers a long folder.
                const batches = [children.slice(0, 1), children.slice(1), []];
                return { readEntries: (ok) => ok(batches.shift()) };
            } });
        const dropped = [
            folder("scans", [file("one.txt", "1"), folder("old", [file("two.txt", "22")]), file("three.txt", "333")]),
            file("loose.txt", "4444"),
        ];
        const dataTransfer = {
            types: ["Files"],
            files: [],
            items: dropped.map((entry) => ({ kind: "file", webkitGetAsEntry: () => entry })),
        };
        const event = new Event("drop", { bubbles: true, cancelable: true });
        Object.defineProperty(event, "dataTransfer", { value: dataTransfer });
        document.body.dispatchEvent(event);
    }""")
    for name in ("one.txt", "two.txt", "three.txt", "loose.txt"):
        bar = app.page.get_by_role("progressbar", name=f"Upload of {name}")
        await expect(bar).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    api = await owner_api(app, http)
    sizes = {path: (await path_of(api, path))["file_size"] for path in (
        "/Inbox/scans/one.txt", "/Inbox/scans/old/two.txt", "/Inbox/scans/three.txt", "/Inbox/loose.txt")}
    assert sizes == {"/Inbox/scans/one.txt": 1, "/Inbox/scans/old/two.txt": 2, "/Inbox/scans/three.txt": 3,
                     "/Inbox/loose.txt": 4}
    await expect(folder_link(app, "scans")).to_be_visible()
    await expect(app.file_row("loose.txt")).to_contain_text("Uploaded")
    assert not app.problems
