"""The web app for every day (issue 25, contract v1.2 "The web app, v1.2: everyday use"), in a real
Chromium against the real stack: sessions that outlive an upload and are shared by tabs, storage used,
who has access, previews (images, a PDF's first page, text, audio, video) that never run a file's
content, selection."""
from __future__ import annotations

import io
import os
import re
import struct
import wave
import zlib
from datetime import datetime, timedelta, UTC

from playwright.async_api import expect

from tests.browser import (  # noqa: F401 - fixtures
    MIB,
    WEB_CHUNK_SIZE,
    WebApp,
    browser,
    file_payload,
    playwright_driver,
    web_gateway,
)
from gateway.thumbnailer import PAGE_EDGE
from tests.core_fixtures import FakeClock
from tests.harness import Api
from tests.images import encoded

RENEW = "/dropbox/v1/tokens/current/renew"


async def session_token(page) -> str:
    return await page.evaluate("JSON.parse(localStorage.getItem('files.session')).token")


# -- sessions ------------------------------------------------------------------------------------------


async def test_an_upload_outlives_its_token_and_an_idle_session_still_ends(browser, make_gateway, cdn, tmp_path):
    """Tokens of 6 s; an upload of 10 s or more at 4 MiB/s goes on through renewals; idle, the session ends.
    The upload outlives its token in real time (the gateway's clock); for the idle end the page's clock
    (Playwright's, flowing as real time until then) jumps past the token's life instead of waiting it out."""
    gateway = await make_gateway(cdn_url=cdn.url, chunk_size=WEB_CHUNK_SIZE, token_ttl=6)
    data = os.urandom(8 * WEB_CHUNK_SIZE)
    path = tmp_path / "long.iso"
    path.write_bytes(data)
    app = await WebApp.open(browser, gateway.url)
    await app.page.clock.install()
    await app.sign_up()
    first_token = await session_token(app.page)
    cdp = await app.page.context.new_cdp_session(app.page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions",
                   {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 4 * MIB})
    await app.pick(str(path))
    await app.wait_uploaded(path.name, timeout=120_000)
    item = app.page.locator(".upload-item").filter(has_text=path.name)
    await expect(item).to_contain_text("Uploaded in")
    renewals = [r for r in app.requests if r.method == "POST" and r.url.endswith(RENEW)]
    assert renewals, "the token was renewed while the upload ran"
    assert await session_token(app.page) != first_token
    await cdp.send("Network.emulateNetworkConditions",
                   {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    # Nobody uses the page now: the session is not renewed and ends, with a message.
    await app.page.clock.fast_forward(7_000)
    await expect(app.page.get_by_role("alert")).to_contain_text("session has expired", timeout=60_000)
    await expect(app.page.get_by_role("button", name="Log in")).to_be_visible()
    assert await app.page.evaluate("localStorage.length") == 0
    assert not app.problems


async def test_two_tabs_share_one_session_and_log_out_together(browser, web_gateway, http):
    first = await WebApp.open(browser, web_gateway.url)
    await first.sign_up()
    await first.pick(file_payload("notes.txt", b"both tabs see me"))
    await first.wait_uploaded("notes.txt")
    token = await session_token(first.page)

    second = await first.page.context.new_page()
    await second.goto(web_gateway.url + "/")
    await expect(second.get_by_role("button", name="Log out")).to_be_visible()
    await expect(second.locator("#my-files").get_by_role("row").filter(has_text="notes.txt")).to_have_count(1)

    await second.get_by_role("button", name="Log out").click()
    await expect(second.get_by_role("button", name="Log in")).to_be_visible()
    await expect(first.page.get_by_role("button", name="Log in")).to_be_visible()
    await expect(first.page.get_by_role("status")).to_contain_text("logged out")
    me = await Api(http, web_gateway.url, token).get("/dropbox/v1/users/me")
    assert me.status == 401 and me.body["error"]["code"] == "token_revoked"

    # Logging in in one tab signs the other in too.
    await first.log_in(first.username)
    await expect(second.get_by_role("button", name="Log out")).to_be_visible()
    await expect(second.locator("#my-files").get_by_role("row").filter(has_text="notes.txt")).to_have_count(1)
    assert not first.problems


# -- storage used, who has access ----------------------------------------------------------------------


async def test_storage_used_and_who_has_access_now(browser, make_gateway, cdn, http):
    clock = FakeClock(datetime.now(UTC))
    gateway = await make_gateway(cdn_url=cdn.url, chunk_size=WEB_CHUNK_SIZE, user_quota_bytes=10 * MIB, clock=clock)
    app = await WebApp.open(browser, gateway.url)
    await app.sign_up()
    storage = app.page.get_by_label("Storage used")
    await expect(storage).to_have_text("0 B of 10.0 MB used")
    await app.pick(file_payload("plan.txt", os.urandom(300_000), "text/plain"))
    await app.wait_uploaded("plan.txt")
    await expect(storage).to_have_text("293 KB of 10.0 MB used")

    # Shared and linked elsewhere (dbx, another tab): the dialog shows who has access now.
    owner = Api(http, gateway.url, await session_token(app.page))
    reader = await Api(http, gateway.url).signup()
    file_id = (await owner.get("/dropbox/v1/files")).body["files"][0]["file_id"]
    assert (await owner.post("/dropbox/v1/files/share", json={"file_id": file_id, "users": [reader.username]})).status == 200
    clock.now -= timedelta(days=2)
    old = await owner.post(f"/dropbox/v1/files/{file_id}/links", json={"expires_in": 3600})
    clock.now += timedelta(days=2)
    fresh = await owner.post(f"/dropbox/v1/files/{file_id}/links", json={})
    assert old.status == fresh.status == 201

    await app.file_row("plan.txt").get_by_role("button", name="Share").click()
    dialog = app.page.get_by_role("dialog")
    people = dialog.get_by_role("list", name="Who has access")
    await expect(people.get_by_role("listitem")).to_have_text([re.compile(re.escape(reader.username))])
    expired = dialog.get_by_role("listitem").filter(has_text=old.body["url"])
    await expect(expired).to_contain_text("Expired")
    await expect(expired).to_contain_text("expired ")
    await expect(expired.get_by_role("button", name="Copy")).to_have_count(0)
    await expect(dialog.get_by_role("listitem").filter(has_text=fresh.body["url"])).to_contain_text("never expires")

    await dialog.get_by_role("button", name=f"Remove {reader.username}", exact=True).click()
    await expect(people).to_be_hidden()
    await expect(dialog.get_by_role("region", name="People").get_by_role("status")).to_contain_text("no longer has access")
    assert (await owner.get(f"/dropbox/v1/files/{file_id}/shares")).body["shared_with"] == []
    assert (await reader.get(f"/dropbox/v1/files/{file_id}")).status == 404
    await app.page.keyboard.press("Escape")
    assert not app.problems


# -- previews ------------------------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    """A valid PNG of one colour, made here (no image library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x20\x80\xe0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A WAV file of silence, made here."""
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(1)
        sound.setframerate(rate)
        sound.writeframes(b"\x80" * int(seconds * rate))
    return out.getvalue()


async def drawn(page, image, width: int) -> None:
    """Wait until the image has loaded and is drawn ``width`` pixels wide."""
    await page.wait_for_function("([img, width]) => img.complete && img.naturalWidth === width",
                                 arg=[await image.element_handle(), width])


HOSTILE_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" onload="alert(1)">'
               b'<script>alert(document.domain); document.title = "pwned";</script>'
               b'<rect width="40" height="20" fill="red"/></svg>')


async def test_previews_show_files_without_ever_running_them(browser, web_gateway, http):
    text = "<script>alert('not run')</script>\nplain text, shown as text\n"
    app = await WebApp.open(browser, web_gateway.url)
    dialogs = []
    app.page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await app.sign_up()
    files = [
        file_payload("photo.png", png(30, 20), "image/png"),
        file_payload("notes.txt", text.encode(), "text/plain"),
        file_payload("evil.svg", HOSTILE_SVG, "image/svg+xml"),
        file_payload("page.html", b"<script>alert(1)</script>", "text/html"),
        file_payload("tone.wav", wav(1.5), "audio/wav"),
        file_payload("archive.zip", b"PK\x05\x06" + bytes(18), "application/zip"),
        file_payload("long.log", b"x" * (1024 * 1024 + 5000), "text/plain"),
        file_payload("report.pdf", encoded("PDF", (595, 842)), "application/pdf"),
    ]
    await app.pick(*files)
    for payload in files:
        await app.wait_uploaded(payload["name"])
    title = await app.page.title()

    await app.file_row("notes.txt").get_by_role("button", name="notes.txt", exact=True).click()
    dialog = app.page.get_by_role("dialog", name="notes.txt")
    await expect(dialog.locator("pre")).to_have_text(text)
    assert await dialog.locator("pre script").count() == 0

    # Previous and Next move through the list, in its order; the dialog is named by each file.
    names = [name.strip() for name in await app.page.locator("#my-files tbody .file-name").all_text_contents()]
    at = names.index("notes.txt")
    seen = {"notes.txt"}
    while at + 1 < len(names):
        await app.page.get_by_role("dialog").get_by_role("button", name="Next").click()
        at += 1
        await expect(app.page.get_by_role("dialog", name=names[at])).to_be_visible()
        seen.add(names[at])
    await expect(app.page.get_by_role("dialog").get_by_role("button", name="Next")).to_be_disabled()
    while at > 0:
        await app.page.keyboard.press("ArrowLeft")
        at -= 1
        await expect(app.page.get_by_role("dialog", name=names[at])).to_be_visible()
        seen.add(names[at])
    assert seen == set(names)
    await app.page.keyboard.press("Escape")
    await expect(app.page.get_by_role("dialog")).to_have_count(0)

    await app.file_row("photo.png").get_by_role("button", name="photo.png", exact=True).click()
    image = app.page.get_by_role("dialog", name="photo.png").get_by_role("img", name="photo.png")
    await expect(image).to_be_visible()
    await drawn(app.page, image, 30)
    assert (await image.get_attribute("src")).startswith(web_gateway.config.cdn_url + "/c/")
    await app.page.keyboard.press("Escape")

    # A PDF shows its first page, an image the gateway's worker rendered (no PDF viewer in the page), once made.
    await expect(app.file_row("report.pdf").locator("img")).to_be_visible(timeout=30_000)  # its thumbnail: made
    await app.file_row("report.pdf").get_by_role("button", name="report.pdf", exact=True).click()
    page = app.page.get_by_role("dialog", name="report.pdf").get_by_role("img", name="Page 1 of report.pdf")
    await app.page.wait_for_function("([img, edge]) => img.complete && img.naturalHeight === edge",
                                     arg=[await page.element_handle(), PAGE_EDGE])
    assert (await page.get_attribute("src")).startswith(web_gateway.config.cdn_url + "/t/")
    await expect(app.page.get_by_role("dialog", name="report.pdf")).to_contain_text("The first page")
    await app.page.keyboard.press("Escape")

    # A hostile SVG is an image: drawn, none of its script run, here or at its URL.
    await app.file_row("evil.svg").get_by_role("button", name="evil.svg", exact=True).click()
    svg = app.page.get_by_role("dialog", name="evil.svg").get_by_role("img", name="evil.svg")
    await drawn(app.page, svg, 40)
    url = await svg.get_attribute("src")
    async with http.get(url) as resp:
        assert resp.status == 200 and await resp.read() == HOSTILE_SVG
        assert resp.headers["Content-Disposition"].startswith("attachment")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
        # Any page may read a signed URL's bytes (the text preview does); the URL is the credential.
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    await app.page.keyboard.press("Escape")

    # HTML is shown as its source text; an archive gets no preview; a long text file shows its first MiB.
    await app.file_row("page.html").get_by_role("button", name="page.html", exact=True).click()
    html = app.page.get_by_role("dialog", name="page.html")
    await expect(html.locator("pre")).to_have_text("<script>alert(1)</script>")
    await expect(html.locator("iframe, object, embed, img, pre *")).to_have_count(0)
    await app.page.keyboard.press("Escape")
    await app.file_row("archive.zip").get_by_role("button", name="archive.zip", exact=True).click()
    archive = app.page.get_by_role("dialog", name="archive.zip")
    await expect(archive).to_contain_text("no preview")
    await expect(archive.get_by_role("button", name="Download")).to_be_visible()
    await app.page.keyboard.press("Escape")
    await app.file_row("long.log").get_by_role("button", name="long.log", exact=True).click()
    long_log = app.page.get_by_role("dialog", name="long.log")
    await expect(long_log).to_contain_text("The first 1.0 MB of 1.0 MB")
    assert await long_log.locator("pre").evaluate("pre => pre.textContent.length") == 1024 * 1024

    await app.page.keyboard.press("Escape")

    # Audio and video play in the browser's own players, from the CDN tier (Range requests).
    await app.file_row("tone.wav").get_by_role("button", name="tone.wav", exact=True).click()
    player = app.page.get_by_role("dialog", name="tone.wav").locator("audio[controls]")
    await app.page.wait_for_function("audio => audio.readyState >= 1 && Math.abs(audio.duration - 1.5) < 0.01",
                                     arg=await player.element_handle())
    assert dialogs == [] and await app.page.title() == title
    assert not app.problems


# A short WebM made by the browser itself (no encoder on this machine): a canvas recorded frame by frame.
RECORD_WEBM = """async ([width, height, frames]) => {
  const canvas = Object.assign(document.createElement("canvas"), { width, height });
  const context = canvas.getContext("2d");
  const recorder = new MediaRecorder(canvas.captureStream(30), { mimeType: "video/webm" });
  const pieces = [];
  recorder.ondataavailable = (event) => pieces.push(event.data);
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  recorder.start();
  for (let frame = 0; frame < frames; frame++) {
    context.fillStyle = `rgb(${frame * 8 % 256}, 90, 200)`;
    context.fillRect(0, 0, width, height);
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
  recorder.stop();
  await stopped;
  return Array.from(new Uint8Array(await new Blob(pieces).arrayBuffer()));
}"""


async def test_a_video_plays_in_the_browsers_own_player_from_the_cdn_tier(browser, web_gateway):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    video = bytes(await app.page.evaluate(RECORD_WEBM, [64, 48, 30]))
    await app.pick(file_payload("clip.webm", video, "video/webm"))
    await app.wait_uploaded("clip.webm")
    await app.file_row("clip.webm").get_by_role("button", name="clip.webm", exact=True).click()
    player = app.page.get_by_role("dialog", name="clip.webm").locator("video[controls]")
    await app.page.wait_for_function("video => video.readyState >= 1 && video.videoWidth === 64",
                                     arg=await player.element_handle())
    assert (await player.get_attribute("src")).startswith(web_gateway.config.cdn_url + "/c/")
    assert not app.problems


# -- selection -----------------------------------------------------------------------------------------


async def test_select_with_shift_click_and_the_keyboard_then_delete_selected(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    await app.pick(*[file_payload(f"{letter}.txt", letter.encode() * 10) for letter in "abcde"])
    for letter in "abcde":
        await app.wait_uploaded(f"{letter}.txt")
    names = [name.strip() for name in await app.page.locator("#my-files tbody .file-name").all_text_contents()]
    assert sorted(names) == [f"{letter}.txt" for letter in "abcde"]
    section = app.page.locator("#my-files")
    box = {name: section.get_by_role("checkbox", name=f"Select {name}", exact=True) for name in names}
    count = section.locator(".selection-count")
    await expect(section.get_by_role("button", name="Delete selected")).to_be_hidden()

    await box[names[0]].click()
    await box[names[3]].click(modifiers=["Shift"])  # a range: the first four
    await expect(count).to_have_text("4 selected")
    for name in names[:4]:
        await expect(box[name]).to_be_checked()
    await expect(box[names[4]]).not_to_be_checked()
    await expect(section.get_by_role("checkbox", name="Select all")).to_have_js_property("indeterminate", True)

    await box[names[3]].focus()
    await app.page.keyboard.press("Space")  # off again
    await expect(count).to_have_text("3 selected")
    await app.page.keyboard.press("Shift+ArrowDown")  # on, and the next one too
    await expect(count).to_have_text("5 selected")
    await expect(box[names[4]]).to_be_focused()
    await expect(section.get_by_role("checkbox", name="Select all")).to_be_checked()
    await app.page.keyboard.press("ArrowUp")
    await expect(box[names[3]]).to_be_focused()
    await app.page.keyboard.press("Space")
    await expect(count).to_have_text("4 selected")

    await section.get_by_role("button", name="Delete selected").click()
    confirm = app.page.get_by_role("dialog", name="Delete 4 files?")
    await confirm.get_by_role("button", name="Delete").click()
    await expect(section.get_by_role("status")).to_have_text("Deleted 4 files.")
    await expect(section.locator("tbody tr")).to_have_count(1)
    await expect(app.file_row(names[3])).to_have_count(1)
    await expect(section.get_by_role("button", name="Delete selected")).to_be_hidden()
    owner = Api(http, web_gateway.url, await session_token(app.page))
    assert [f["file_name"] for f in (await owner.get("/dropbox/v1/files")).body["files"]] == [names[3]]
    assert not app.problems
