"""The web app's screens checked by axe-core (Deque's accessibility engine) in a real Chromium:
no WCAG 2.x A/AA violation on any of them, light and dark, desktop and phone width."""
from __future__ import annotations

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import expect

from tests.browser import WebApp, browser, file_payload, playwright_driver, web_gateway  # noqa: F401
from tests.harness import Api
from tests.images import encoded
from tests.test_web_everyday import png, session_token

OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
           "resultTypes": ["violations"]}


async def violations(page) -> list[str]:
    results = await Axe().run(page, options=OPTIONS)
    return [f"{v['id']}: {v['help']} ({', '.join(str(n['target']) for n in v['nodes'])})"
            for v in results.response["violations"]]


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_every_screen_has_no_accessibility_violation(browser, web_gateway, http, scheme):
    found: dict[str, list[str]] = {}
    context = await browser.new_context(color_scheme=scheme, accept_downloads=True)
    page = await context.new_page()
    await page.goto(web_gateway.url + "/")
    app = WebApp(page, web_gateway.url)

    async def check(screen: str) -> None:
        problems = await violations(page)
        if problems:
            found[screen] = problems

    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await check("signed out")
    await app.sign_up()
    await check("signed in, no files")
    await app.pick(file_payload("photo.png", png(20, 10), "image/png"),
                   file_payload("notes.txt", b"some notes\n", "text/plain"),
                   file_payload("report.pdf", encoded("PDF", (300, 400)), "application/pdf"))
    for name in ("photo.png", "notes.txt", "report.pdf"):
        await app.wait_uploaded(name)
    await check("files and finished uploads")

    owner = Api(http, web_gateway.url, await session_token(page))
    friend = await Api(http, web_gateway.url).signup()
    file_id = next(f["file_id"] for f in (await owner.get("/dropbox/v1/files")).body["files"]
                   if f["file_name"] == "notes.txt")
    await owner.post("/dropbox/v1/files/share", json={"file_id": file_id, "users": [friend.username]})
    await owner.post(f"/dropbox/v1/files/{file_id}/links", json={"expires_in": 3600})
    await app.file_row("notes.txt").get_by_role("button", name="Share").click()
    await expect(page.get_by_role("dialog").get_by_role("button", name=f"Remove {friend.username}")).to_be_visible()
    await expect(page.get_by_role("dialog").get_by_role("button", name="Revoke")).to_be_visible()
    await check("share dialog with people and a link")
    await page.keyboard.press("Escape")

    await app.file_row("photo.png").get_by_role("button", name="photo.png", exact=True).click()
    await expect(page.get_by_role("dialog", name="photo.png").get_by_role("img")).to_be_visible()
    await check("image preview")
    await page.keyboard.press("Escape")
    await app.file_row("notes.txt").get_by_role("button", name="notes.txt", exact=True).click()
    await expect(page.get_by_role("dialog", name="notes.txt").locator("pre")).to_have_text("some notes\n")
    await check("text preview")
    await page.keyboard.press("Escape")
    await expect(app.file_row("report.pdf").locator("img")).to_be_visible(timeout=30_000)  # made: the page too
    await app.file_row("report.pdf").get_by_role("button", name="report.pdf", exact=True).click()
    await expect(page.get_by_role("dialog", name="report.pdf").get_by_role("img", name="Page 1 of report.pdf")).to_be_visible()
    await check("PDF preview")
    await page.keyboard.press("Escape")

    await page.locator("#my-files").get_by_role("checkbox", name="Select all").check()
    await expect(page.get_by_role("button", name="Delete selected")).to_be_visible()
    await check("files selected")
    await page.get_by_role("button", name="Delete selected").click()
    await expect(page.get_by_role("dialog", name="Delete 3 files?")).to_be_visible()
    await check("delete selected, asked first")
    await page.keyboard.press("Escape")

    await page.get_by_role("button", name="Account").click()
    await check("account dialog")
    await page.keyboard.press("Escape")

    await page.set_viewport_size({"width": 360, "height": 740})
    await check("phone width")
    await context.close()
    assert not found, found
