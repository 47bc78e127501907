"""The web app's lists and panel for every day (issue 25), in Chromium against the real stack: sorting by
name, size and date; each row's buttons named with the row's name for screen readers; the focus on the
main content after logging in; the uploads panel folded away and its live region."""
from __future__ import annotations

from playwright.async_api import expect

from tests.browser import (  # noqa: F401 - fixtures
    WebApp,
    browser,
    file_payload,
    playwright_driver,
    web_gateway,
)
from tests.harness import Api
from tests.test_web_accessibility import violations
from tests.test_web_everyday import session_token
from tests.test_zips_stack import put_inline


async def shown_names(app: WebApp) -> list[str]:
    return [name.strip() for name in await app.page.locator("#my-files tbody .file-name").all_text_contents()]


async def files_to_sort(app: WebApp, http) -> None:
    """Three files uploaded in one order (dates), sizes in another, names in a third; and a folder."""
    await app.sign_up()
    owner = Api(http, app.base_url, await session_token(app.page))
    for name, size in (("b 10.txt", 300), ("a.txt", 100), ("B 9.txt", 200)):
        await put_inline(owner, b"x" * size, file_name=name)
    await owner.post("/dropbox/v1/folders", json={"path": "/zeta"})
    await app.page.reload()
    await expect(app.page.locator("#my-files tbody tr")).to_have_count(4)


async def test_sort_by_name_size_and_date_with_folders_first(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    await files_to_sort(app, http)
    section = app.page.locator("#my-files")
    headings = {key: section.get_by_role("columnheader", name=key) for key in ("Name", "Size", "Date")}

    await headings["Size"].get_by_role("button").click()
    await expect(headings["Size"]).to_have_attribute("aria-sort", "ascending")
    assert await shown_names(app) == ["zeta", "a.txt", "B 9.txt", "b 10.txt"]
    await headings["Size"].get_by_role("button").click()
    await expect(headings["Size"]).to_have_attribute("aria-sort", "descending")
    assert await shown_names(app) == ["zeta", "b 10.txt", "B 9.txt", "a.txt"]

    await headings["Name"].get_by_role("button").click()  # case aside, numbers as numbers: 9 before 10
    await expect(headings["Name"]).to_have_attribute("aria-sort", "ascending")
    await expect(headings["Size"]).not_to_have_attribute("aria-sort", "descending")
    assert await shown_names(app) == ["zeta", "a.txt", "B 9.txt", "b 10.txt"]

    await headings["Date"].get_by_role("button").click()
    await headings["Date"].get_by_role("button").click()  # newest first
    await expect(headings["Date"]).to_have_attribute("aria-sort", "descending")
    assert await shown_names(app) == ["zeta", "B 9.txt", "a.txt", "b 10.txt"]
    assert not app.problems


async def test_sort_at_a_phones_width_and_in_the_grid_view_where_no_heading_shows(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url, viewport={"width": 375, "height": 740})
    await files_to_sort(app, http)
    section = app.page.locator("#my-files")
    sort = section.get_by_label("Sort by")
    await expect(section.get_by_role("columnheader", name="Size")).to_be_hidden()
    await expect(sort).to_be_visible()
    assert await violations(app.page) == []
    await sort.select_option(label="Size, largest first")
    assert await shown_names(app) == ["zeta", "b 10.txt", "B 9.txt", "a.txt"]
    await sort.select_option(label="Date, newest first")
    assert await shown_names(app) == ["zeta", "B 9.txt", "a.txt", "b 10.txt"]

    # A desktop's width: the list's headings sort, and say what the select chose; the grid has no headings.
    await app.page.set_viewport_size({"width": 1280, "height": 800})
    await expect(sort).to_be_hidden()
    await expect(section.get_by_role("columnheader", name="Date")).to_have_attribute("aria-sort", "descending")
    await section.get_by_role("button", name="Grid view").click()
    await expect(sort).to_be_visible()
    await expect(sort).to_have_value("date-descending")
    await sort.select_option(label="Name, Z to A")
    assert await shown_names(app) == ["zeta", "b 10.txt", "B 9.txt", "a.txt"]
    await sort.focus()  # from the keyboard too
    await app.page.keyboard.press("ArrowUp")  # the choice before: Name, A to Z
    await expect(sort).to_have_value("name-ascending")
    assert await shown_names(app) == ["zeta", "a.txt", "B 9.txt", "b 10.txt"]
    assert await violations(app.page) == []
    await section.get_by_role("button", name="List view").click()
    await expect(section.get_by_role("columnheader", name="Name")).to_have_attribute("aria-sort", "ascending")
    assert not app.problems


async def test_row_buttons_carry_the_name_and_the_focus_goes_to_the_files_after_log_in(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    username = await app.sign_up()
    owner = Api(http, web_gateway.url, await session_token(app.page))
    await put_inline(owner, b"report", file_name="report.pdf")
    await app.page.get_by_role("button", name="Log out").click()
    await app.log_in(username)
    await expect(app.page.locator("main")).to_be_focused()

    row = app.file_row("report.pdf")
    for label in ("Download", "Share", "Rename", "Move", "Versions", "Delete"):
        button = row.get_by_role("button", name=f"{label} report.pdf", exact=True)
        await expect(button).to_have_text(label)  # the visible label is the name's first word
        await expect(row.get_by_role("button", name=label)).to_have_count(1)  # the contract's name still finds it
    assert not app.problems


async def test_the_uploads_panel_folds_away_and_says_what_happened(browser, web_gateway):
    app = await WebApp.open(browser, web_gateway.url, viewport={"width": 1700, "height": 900})  # a large screen
    await app.sign_up()
    live = app.page.locator(".uploads-area [role=status]")
    await expect(live).to_have_count(1)  # in the page before the first upload
    await app.pick(file_payload("told.txt", b"announced"))
    await app.wait_uploaded("told.txt")
    await expect(live).to_have_text("told.txt uploaded.")

    panel = app.page.locator("section.uploads")
    hide = panel.get_by_role("button", name="Hide uploads")
    await expect(hide).to_have_attribute("aria-expanded", "true")
    await hide.click()
    await expect(panel.locator(".upload-list")).to_be_hidden()
    await expect(panel.locator(".uploads-summary")).to_have_text("1 done")
    show = panel.get_by_role("button", name="Show uploads")
    await expect(show).to_have_attribute("aria-expanded", "false")
    await show.click()
    await expect(panel.locator(".upload-item").filter(has_text="told.txt")).to_be_visible()
    # Beside the list on a large screen, not above it: the list starts where it would without uploads.
    box, table = await panel.bounding_box(), await app.page.locator("#my-files").bounding_box()
    assert box and table and box["x"] >= table["x"] + table["width"], (box, table)
    assert not app.problems


async def test_move_selected_moves_files_and_folders_together(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    owner = Api(http, web_gateway.url, await session_token(app.page))
    await owner.post("/dropbox/v1/folders", json={"path": "/Archive"})
    await owner.post("/dropbox/v1/folders", json={"path": "/Old/inside"})
    for name in ("one.txt", "two.txt", "stays.txt"):
        await put_inline(owner, name.encode(), file_name=name)
    await app.page.reload()
    section = app.page.locator("#my-files")
    for name in ("one.txt", "two.txt", "Old"):
        await section.get_by_role("checkbox", name=f"Select {name}", exact=True).check()
    await section.get_by_role("button", name="Move selected").click()
    dialog = app.page.get_by_role("dialog", name="Move 3 items")
    await expect(dialog.get_by_role("button", name="Old", exact=True)).to_have_count(0)  # not into itself
    await dialog.get_by_role("button", name="Archive", exact=True).click()
    await expect(dialog).to_contain_text("/Archive")
    await dialog.get_by_role("button", name="Move here").click()
    await expect(dialog).to_have_count(0)
    await expect(section.locator("tbody tr")).to_have_count(2)  # Archive and stays.txt
    listed = await owner.get("/dropbox/v1/metadata?path=/Archive/Old/inside")
    assert listed.status == 200, listed.body
    for name in ("one.txt", "two.txt"):
        assert (await owner.get(f"/dropbox/v1/metadata?path=/Archive/{name}")).status == 200
    assert not app.problems
