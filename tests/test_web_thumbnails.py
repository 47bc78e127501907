"""Thumbnails and the grid view in the web app (issue 25; contract v1.2 "everyday use": "an img inside
the row, once the thumbnail is made"), in a real Chromium against the real stack: the gateway's worker
makes the thumbnail after the upload, the CDN tier serves it under the app's CSP."""
from __future__ import annotations

import asyncio

from playwright.async_api import expect

from tests.browser import (  # noqa: F401 - fixtures
    WEB_CHUNK_SIZE,
    WebApp,
    browser,
    file_payload,
    playwright_driver,
    web_gateway,
)
from tests.harness import Api, upload
from tests.images import encoded
from tests.test_web_accessibility import violations
from tests.test_web_tree import new_folder


LOADED = """img => img.complete ? img.naturalWidth > 0 : new Promise((resolve) => {
    img.addEventListener("load", () => resolve(img.naturalWidth > 0), { once: true });
    img.addEventListener("error", () => resolve(false), { once: true });
})"""


async def loaded(image) -> bool:
    """Whether the img's picture arrives and decodes (an answer the browser could not show has no width).
    Waits for the img's own load or error event: a visible img may still be fetching its picture."""
    return await asyncio.wait_for(image.evaluate(LOADED), 30)


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


async def test_a_shared_links_page_shows_the_thumbnail_when_the_link_has_no_password(browser, web_gateway, http):
    """The page for people (``/s/<token>``), in a browser that never signed in: the image from the CDN tier
    under the page's own CSP (no script at all), and none for a link with a password."""
    owner = await Api(http, web_gateway.url).signup()
    photo = await upload(owner, encoded("JPEG", (1200, 800)), WEB_CHUNK_SIZE, file_name="beach.jpg",
                         file_type="image/jpeg")
    assert await asyncio.wait_for(web_gateway.core.thumbnails.settled(photo["fingerprint"]), 60) == "made"
    links = f"/dropbox/v1/files/{photo['file_id']}/links"
    open_link, guarded = (await owner.post(links)).body, (await owner.post(links, json={"password": "secret"})).body

    visitor = await WebApp.open(browser, web_gateway.url, "/s/" + open_link["url"].rsplit("/", 1)[1])
    thumbnail = visitor.page.get_by_role("img", name="Thumbnail of beach.jpg")
    await expect(thumbnail).to_be_visible()
    assert await loaded(thumbnail)
    assert (await thumbnail.get_attribute("src")).startswith(web_gateway.config.cdn_url + "/t/")
    assert await violations(visitor.page) == []
    await visitor.page.goto(guarded["url"])
    await expect(visitor.page.get_by_label("Password")).to_be_visible()
    await expect(visitor.page.get_by_role("img")).to_have_count(0)
    assert not visitor.problems, visitor.problems


def overlap(a: dict, b: dict) -> bool:
    """Whether two bounding boxes share any area (touching edges do not)."""
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def inside(a: dict, b: dict) -> bool:
    """Whether box a lies within box b (to a pixel's rounding)."""
    return (a["x"] >= b["x"] - 1 and a["y"] >= b["y"] - 1 and a["x"] + a["width"] <= b["x"] + b["width"] + 1
            and a["y"] + a["height"] <= b["y"] + b["height"] + 1)


async def test_a_tiles_checkbox_covers_neither_the_folder_icon_nor_the_thumbnail(browser, web_gateway):
    """In the grid, each tile's `Select <name>` checkbox sits beside what the tile shows, not on it: a folder's
    icon, a picture's thumbnail, the extension box of a file without one; at a desktop's and a phone's width."""
    app = await WebApp.open(browser, web_gateway.url, viewport={"width": 1280, "height": 800})
    await app.sign_up()
    await new_folder(app, "Holidays")
    await app.pick(file_payload("beach.jpg", encoded("JPEG", (1200, 800)), "image/jpeg"),
                   file_payload("notes.txt", b"no picture here\n", "text/plain"))
    for name in ("beach.jpg", "notes.txt"):
        await app.wait_uploaded(name)
    await expect(app.file_row("beach.jpg").locator("img")).to_be_visible(timeout=30_000)
    await app.page.get_by_role("button", name="Grid view").click()
    shown = {"Holidays": ".folder-icon", "beach.jpg": ".thumb", "notes.txt": ".thumb"}

    for width, height in ((1280, 800), (360, 740)):
        await app.page.set_viewport_size({"width": width, "height": height})
        for name, picture in shown.items():
            tile = app.file_row(name)
            box = await tile.get_by_role("checkbox", name=f"Select {name}", exact=True).bounding_box()
            drawn = await tile.locator(picture).bounding_box()
            whole = await tile.bounding_box()
            assert box and drawn and whole, (width, name)
            assert not overlap(box, drawn), (width, name, box, drawn)
            assert inside(box, whole) and inside(drawn, whole), (width, name)  # both are the tile's own
    assert await violations(app.page) == []
    assert not app.problems, app.problems
