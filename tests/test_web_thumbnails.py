"""Thumbnails and the grid view in the web app (issue 25; contract v1.2 "everyday use": "an img inside
the row, once the thumbnail is made"), in a real Chromium against the real stack: the gateway's worker
makes the thumbnail after the upload, the CDN tier serves it under the app's CSP."""
from __future__ import annotations

from playwright.async_api import expect

from tests.browser import (  # noqa: F401 - fixtures
    WebApp,
    browser,
    file_payload,
    playwright_driver,
    web_gateway,
)
from tests.images import encoded


async def loaded(image) -> bool:
    """Whether the img's picture arrived and decoded (an answer the browser could not show has no width)."""
    return await image.evaluate("img => img.complete && img.naturalWidth > 0")


async def test_a_thumbnail_appears_after_upload_and_the_grid_view_shows_it_large(browser, web_gateway):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    await app.pick(file_payload("beach.jpg", encoded("JPEG", (1200, 800)), "image/jpeg"),
                   file_payload("IMG_0042.HEIC", encoded("HEIF", (800, 600)), ""),  # browsers give HEIC no type
                   file_payload("notes.txt", b"no picture here\n", "text/plain"))
    for name in ("beach.jpg", "IMG_0042.HEIC", "notes.txt"):
        await app.wait_uploaded(name)

    for name in ("beach.jpg", "IMG_0042.HEIC"):
        thumbnail = app.file_row(name).locator("img")
        await expect(thumbnail).to_be_visible(timeout=30_000)
        assert await loaded(thumbnail), name
        assert (await thumbnail.get_attribute("src")).startswith(web_gateway.config.cdn_url + "/t/")
    await expect(app.file_row("notes.txt").locator("img")).to_have_count(0)
    list_width = (await app.file_row("beach.jpg").locator("img").bounding_box())["width"]

    grid, listed = app.page.get_by_role("button", name="Grid view"), app.page.get_by_role("button", name="List view")
    await grid.click()
    await expect(grid).to_have_attribute("aria-pressed", "true")
    await expect(listed).to_have_attribute("aria-pressed", "false")
    tile = app.file_row("beach.jpg")  # still a row holding the name, its buttons as before
    await expect(tile.get_by_role("button", name="Download")).to_be_visible()
    assert (await tile.locator("img").bounding_box())["width"] > 3 * list_width

    # The choice is kept: listed again, the page opens in the grid, thumbnails from the listing itself.
    await app.page.reload()
    await expect(app.page.get_by_role("button", name="Grid view")).to_have_attribute("aria-pressed", "true")
    await expect(app.file_row("beach.jpg").locator("img")).to_be_visible()
    assert await loaded(app.file_row("beach.jpg").locator("img"))
    await app.page.get_by_role("button", name="List view").click()
    await expect(app.page.locator("html")).to_have_attribute("data-view", "list")
    assert not app.problems, app.problems
