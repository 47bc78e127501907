"""The web app in a real Chromium against the real stack: store, gateway, nginx (CDN tier).

Every upload here is the app's own: chunks fingerprinted in the page's worker,
PUT straight to the store with the presigned URLs, verified by the store and
the gateway. The requests the page made are recorded, so the tests can see
where the bytes went.
"""
from __future__ import annotations

import hashlib
import os
import re

import aiohttp
import pytest
from playwright.async_api import expect

from gateway.http.routes import webapp
from protocol.fingerprints import fingerprint_stream
from tests.browser import (  # noqa: F401 - fixtures
    MIB,
    SCRIPT_TAG,
    WEB_CHUNK_SIZE,
    WebApp,
    browser,
    file_payload,
    launch_browser,
    origin_of,
    part_number,
    playwright_driver,
    web_gateway,
)
from tests.harness import Api


# -- the page and its headers (no browser) ----------------------------------------------------------


async def test_the_page_is_served_with_a_strict_policy(web_gateway, store, cdn, http: aiohttp.ClientSession):
    async with http.get(web_gateway.url + "/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        page = await resp.text()
        headers = resp.headers
    policy = dict(
        (part.strip().split(" ", 1) + [""])[:2] for part in headers["Content-Security-Policy"].split(";")
    )
    # WebAssembly may be compiled (the plain-http SHA-256), nothing else evaluated.
    assert policy["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert set(policy["connect-src"].split()) == {"'self'", store.endpoint, cdn.url}
    # Previews: images, audio and video from the CDN tier only (signed download URLs), nothing framed.
    assert set(policy["img-src"].split()) == {"'self'", cdn.url}
    assert policy["media-src"] == cdn.url
    assert set(policy) == {"default-src", "script-src", "worker-src", "style-src", "img-src", "media-src",
                           "connect-src", "form-action", "base-uri", "frame-ancestors"}
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-cache"
    # No inline script: every script tag loads a file of this origin.
    tags = SCRIPT_TAG.findall(page)
    assert tags and all('src="/assets/' in tag for tag in tags)
    assert re.search(r"<script\b[^>]*>[^<]+</script>", page) is None
    assert f"/assets/{webapp.VERSION}/js/main.js" in page


async def test_assets_are_cached_by_version_and_static_urls_revalidate(web_gateway, http: aiohttp.ClientSession):
    base = web_gateway.url
    async with http.get(f"{base}/assets/{webapp.VERSION}/js/upload.js") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/javascript"
        assert "immutable" in resp.headers["Cache-Control"]
        assert "script-src 'self' 'wasm-unsafe-eval';" in resp.headers["Content-Security-Policy"]
    async with http.get(f"{base}/assets/0000000000000000/js/upload.js") as resp:
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-cache"
    async with http.get(f"{base}/static/style.css") as resp:
        assert resp.status == 200 and resp.content_type == "text/css"
        etag = resp.headers["ETag"]
        assert resp.headers["Cache-Control"] == "no-cache"
    async with http.get(f"{base}/static/style.css", headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
    async with http.get(f"{base}/static/vendor/noble-hashes/LICENSE.txt") as resp:
        assert resp.status == 200 and "MIT License" in await resp.text()
    for missing in ("/static/nothing.js", "/static/index.html", "/static/../gateway/config.py", "/assets/x/js/nope.js"):
        async with http.get(base + missing) as resp:
            assert resp.status == 404, missing
            body = await resp.json()
            assert body["error"]["code"]


# -- in the browser -----------------------------------------------------------------------------------


async def test_sign_up_upload_straight_to_the_store_download_and_log_out(browser, web_gateway, store, tmp_path):
    data = os.urandom(2 * WEB_CHUNK_SIZE + 123_457)  # three chunks, the last one short
    path = tmp_path / "holiday photos.bin"
    path.write_bytes(data)
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()

    await app.pick(str(path))
    await app.wait_uploaded(path.name)

    puts = app.store_puts(store.endpoint)
    assert sorted(part_number(r) for r in puts) == [1, 2, 3]
    # The bytes went to the store, never through the gateway: every request with a body
    # that the page sent to the gateway is small JSON.
    to_gateway = [r for r in app.requests if origin_of(r.url) == web_gateway.url]
    assert not [r for r in to_gateway if r.method == "PUT"]
    assert all(len(r.post_data_buffer or b"") < 64 * 1024 for r in to_gateway)
    # The file object agrees: verified by the store, the file's fingerprint as the contract defines it.
    api = Api(None, web_gateway.url)
    row = app.file_row(path.name)
    await expect(row.get_by_role("button", name="Download")).to_be_enabled()
    await expect(row).to_contain_text("Uploaded")

    async with app.page.expect_download() as info:
        await row.get_by_role("button", name="Download").click()
    download = await info.value
    assert download.suggested_filename == path.name
    assert (await download.path()).read_bytes() == data

    await app.page.get_by_role("button", name="Log out").click()
    await expect(app.page.get_by_role("button", name="Log in")).to_be_visible()
    await expect(app.page.get_by_role("status")).to_contain_text("logged out")
    assert [r for r in app.requests if r.method == "DELETE" and r.url.endswith("/dropbox/v1/tokens/current")]
    assert await app.page.evaluate("localStorage.length") == 0
    assert not app.problems
    del api


async def test_the_fingerprint_is_the_contracts(browser, web_gateway, tmp_path):
    """The workers' fingerprints, with WebCrypto, the vendored WebAssembly and JavaScript SHA-256 alike and
    however many workers share the chunks, are protocol/fingerprints.py's (hashlib's)."""
    chunk_size = 256 * 1024  # the hashing takes any chunk size: small ones keep the slowest engine quick
    data = os.urandom(4 * chunk_size + 1000)  # five chunks, the last one short
    expected_fp, expected_chunks, _ = fingerprint_stream(__import__("io").BytesIO(data), chunk_size)
    assert expected_chunks[0] == hashlib.sha256(data[:chunk_size]).hexdigest()
    app = await WebApp.open(browser, web_gateway.url)
    # The bytes travel as a file chosen in an input of a scratch page element (fast, no JSON).
    await app.page.evaluate("""() => {
        const input = document.createElement("input"); input.type = "file"; input.id = "scratch";
        document.body.append(input);
    }""")
    await app.page.locator("#scratch").set_input_files(file_payload("x.bin", data))
    for engine, workers in [("webcrypto", 1), ("webcrypto", 2), ("wasm", 1), ("wasm", 3), ("fallback", 2), ("auto", 4)]:
        result = await app.page.evaluate(
            """async ([engine, workers, chunkSize]) => {
                const { hashFile } = await import("/static/js/hashing.js");
                const file = document.getElementById("scratch").files[0];
                return await hashFile(file, chunkSize, { engine, workers });
            }""",
            [engine, workers, chunk_size],
        )
        assert result["engine"] == ("webcrypto" if engine == "auto" else engine)
        assert result["chunks"] == expected_chunks, (engine, workers)
        assert result["fingerprint"] == expected_fp, (engine, workers)
    for engine in ("wasm", "fallback"):
        empty = await app.page.evaluate("""async (engine) => {
            const { hashFile } = await import("/static/js/hashing.js");
            return await hashFile(new Blob([]), 5242880, { engine });
        }""", engine)
        assert empty["chunks"] == [] and empty["fingerprint"] == hashlib.sha256(b"").hexdigest()
    assert not app.problems  # compiling the WebAssembly broke no rule of the page's policy


async def test_an_upload_resumes_after_a_reload_sending_only_missing_chunks(browser, web_gateway, store, tmp_path):
    """Pause half-way, reload the page, pick the same file: only the chunks the store lacks are sent."""
    data = os.urandom(8 * WEB_CHUNK_SIZE - 4096)  # eight chunks
    path = tmp_path / "big.iso"
    path.write_bytes(data)
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    # A slow uplink (4 MiB/s), so that the test can pause while chunks are on their way.
    cdp = await app.page.context.new_cdp_session(app.page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions",
                   {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 4 * MIB})
    await app.pick(str(path))
    status = app.page.locator(".upload-item").filter(has_text=path.name)
    await expect(status).to_contain_text(re.compile(r"\b[4-7] of 8 chunks sent"), timeout=60_000)
    await status.get_by_role("button", name="Pause").click()
    await expect(status).to_contain_text("Paused")
    confirmed = set()  # chunks the store answered 200 for before the pause
    started = {part_number(r) for r in app.store_puts(store.endpoint)}
    for request in app.store_puts(store.endpoint):
        response = await request.response()
        if response is not None and response.status == 200:
            confirmed.add(part_number(request))
    assert 4 <= len(confirmed) < 8

    await cdp.send("Network.emulateNetworkConditions",
                   {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    await app.page.reload()
    await expect(app.file_row(path.name)).to_contain_text("Incomplete")
    before = len(app.requests)
    await app.pick(str(path))
    await app.wait_uploaded(path.name)

    second_run = [part_number(r) for r in app.store_puts(store.endpoint, since=before)]
    # Nothing the store had confirmed is sent again; what it lacked is sent, once.
    assert second_run and len(second_run) == len(set(second_run))
    assert not confirmed & set(second_run)
    # A chunk cut off by the pause may still have reached the store whole; any other is sent now.
    assert set(range(1, 9)) - confirmed - set(second_run) <= started - confirmed
    await expect(app.page.locator(".upload-item").filter(has_text=path.name)).to_contain_text("resumed")
    async with app.page.expect_download() as info:
        await app.file_row(path.name).get_by_role("button", name="Download").click()
    assert (await (await info.value).path()).read_bytes() == data


async def test_share_with_a_user_who_sees_it_under_shared_with_me(browser, web_gateway):
    data = os.urandom(300_000)
    owner = await WebApp.open(browser, web_gateway.url)
    reader = await WebApp.open(browser, web_gateway.url)
    reader_name = await reader.sign_up()
    await owner.sign_up()
    await owner.pick(file_payload("minutes.txt", data, "text/plain"))
    await owner.wait_uploaded("minutes.txt")

    await owner.file_row("minutes.txt").get_by_role("button", name="Share").click()
    dialog = owner.page.get_by_role("dialog")
    await dialog.get_by_label("Share with").fill("nobody-" + reader_name)
    await dialog.get_by_role("button", name="Share", exact=True).click()
    await expect(dialog.get_by_role("region", name="People").get_by_role("alert")).to_contain_text("no user named")
    await dialog.get_by_label("Share with").fill(reader_name)
    await dialog.get_by_role("button", name="Share", exact=True).click()
    await expect(dialog.get_by_role("listitem").filter(has_text=reader_name)).to_be_visible()
    await owner.page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)

    await reader.page.reload()
    shared = reader.page.get_by_role("region", name="Shared with me")
    await expect(shared.get_by_role("heading", name="Shared with me")).to_be_visible()
    row = shared.get_by_role("row").filter(has_text="minutes.txt")
    await expect(row).to_contain_text(f"from {owner.username}")
    # A reader may download, never share or delete.
    await expect(row.get_by_role("button", name="Share")).to_have_count(0)
    await expect(row.get_by_role("button", name="Delete")).to_have_count(0)
    async with reader.page.expect_download() as info:
        await row.get_by_role("button", name="Download").click()
    assert (await (await info.value).path()).read_bytes() == data

    # The owner stops sharing: the reader's list no longer has it.
    await owner.file_row("minutes.txt").get_by_role("button", name="Share").click()
    await owner.page.get_by_role("dialog").get_by_role("button", name="Share", exact=True).wait_for()
    await owner.page.get_by_label("Share with").fill(reader_name)
    await owner.page.get_by_role("dialog").get_by_role("button", name="Share", exact=True).click()
    await owner.page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    people = owner.page.get_by_role("dialog").get_by_role("region", name="People")
    await expect(people.get_by_role("status")).to_contain_text("no longer has access")
    await reader.page.reload()
    await expect(reader.page.locator("#shared-files")).to_contain_text("Nobody has shared a file with you yet")
    assert not owner.problems and not reader.problems


async def test_file_names_are_shown_as_text_in_their_real_order(browser, web_gateway):
    name = "<img src=x onerror=alert(1)>.txt"
    reversing = "photo\u202egnp.exe"  # U+202E RIGHT-TO-LEFT OVERRIDE: it would read "photoexe.png"
    shown = "photo\ufffdgnp.exe"  # the override shown as a marked replacement character
    app = await WebApp.open(browser, web_gateway.url)
    dialogs = []
    app.page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await app.sign_up()
    await app.pick(file_payload(name, b"not html at all"), file_payload(reversing, b"MZ, not a picture"))
    await app.wait_uploaded(name)
    await app.wait_uploaded(shown)
    await expect(app.file_row(name).locator(".file-name")).to_have_text(name)
    for upload_name in (name, shown):
        await expect(app.page.locator(".upload-name", has_text=upload_name)).to_have_text(upload_name)
    await app.page.reload()
    await expect(app.file_row(name).locator(".file-name")).to_have_text(name)
    assert await app.page.locator("main img").count() == 0
    assert dialogs == []
    # Isolated (<bdi>), in its real order, the override marked and what it is said.
    marked = app.file_row(shown).locator(".file-name")
    await expect(marked).to_have_text(shown)
    assert await marked.evaluate("element => element.localName") == "bdi"
    await expect(marked).to_have_attribute("title", re.compile("^This name contains an invisible character"))
    await expect(marked.locator(".hidden-char")).to_have_attribute("title", "U+202E")
    assert not app.problems


async def test_delete_asks_first_and_an_expired_session_goes_back_to_log_in(browser, web_gateway):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    await app.pick(file_payload("draft.txt", b"draft"), file_payload("keep.txt", b"keep"))
    await app.wait_uploaded("draft.txt")
    await app.wait_uploaded("keep.txt")

    row = app.file_row("draft.txt")
    await row.get_by_role("button", name="Delete").click()
    confirm = app.page.get_by_role("dialog")
    await expect(confirm).to_contain_text("draft.txt")
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(row).to_have_count(1)
    await row.get_by_role("button", name="Delete").click()
    await app.page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(row).to_have_count(0)
    await app.page.reload()
    await expect(app.file_row("keep.txt")).to_have_count(1)
    await expect(app.file_row("draft.txt")).to_have_count(0)

    # The token stops being accepted (here: a forged one in its place), as after it expires:
    # back to log in, with a message.
    await app.page.evaluate("""() => {
        const session = JSON.parse(localStorage.getItem("files.session"));
        session.token = session.token.slice(0, -4) + "AAAA";
        localStorage.setItem("files.session", JSON.stringify(session));
    }""")
    await app.page.reload()
    await expect(app.page.get_by_role("alert")).to_contain_text("session has expired")
    await expect(app.page.get_by_role("button", name="Log in")).to_be_visible()
    await app.log_in(app.username)
    await expect(app.file_row("keep.txt")).to_have_count(1)


async def test_errors_a_person_can_act_on_when_logging_in(browser, web_gateway):
    app = await WebApp.open(browser, web_gateway.url)
    username = await app.sign_up()
    await app.page.get_by_role("button", name="Log out").click()
    await app.page.get_by_label("Username").fill(username)
    await app.page.get_by_label("Password").fill("not the password")
    await app.page.get_by_role("button", name="Log in").click()
    await expect(app.page.get_by_role("alert")).to_have_text("Wrong username or password.")
    await app.page.get_by_label("Email").fill("x@example.com")
    await app.page.get_by_label("Password").fill("long enough password")
    await app.page.get_by_role("button", name="Sign up").click()
    await expect(app.page.get_by_role("alert")).to_contain_text("username is taken")
    alert = await app.page.get_by_role("alert").text_content()
    assert "{" not in alert and "error" not in alert


@pytest.mark.parametrize(("flags", "hasher"), [([], "wasm"), (["--js-flags=--jitless"], "fallback")],
                         ids=["webassembly", "no-webassembly"])
async def test_on_a_plain_http_lan_address_the_slower_hasher_is_used_and_announced(playwright_driver, web_gateway,
                                                                                   flags, hasher):
    """crypto.subtle exists only in secure contexts; lan.test (mapped to 127.0.0.1) is not one. There the
    WebAssembly SHA-256 hashes, or, in a browser without WebAssembly (V8 without its JIT, as hardened browser
    modes run it), the JavaScript one."""
    port = web_gateway.config.port
    browser = await launch_browser(playwright_driver, ["--host-resolver-rules=MAP lan.test 127.0.0.1", *flags])
    try:
        app = await WebApp.open(browser, f"http://lan.test:{port}")
        assert await app.page.evaluate("window.isSecureContext") is False
        assert await app.page.evaluate("typeof WebAssembly") == ("object" if hasher == "wasm" else "undefined")
        await app.sign_up()
        await expect(app.page.get_by_role("note")).to_contain_text("slower built-in hasher")
        chunk_size = 256 * 1024  # which hasher runs is the point here: few bytes keep the one without a JIT quick
        data = os.urandom(chunk_size + 10)
        expected, chunks, _ = fingerprint_stream(__import__("io").BytesIO(data), chunk_size)
        await app.page.evaluate("""() => {
            const input = document.createElement("input"); input.type = "file"; input.id = "scratch";
            document.body.append(input);
        }""")
        await app.page.locator("#scratch").set_input_files(file_payload("x.bin", data))
        result = await app.page.evaluate("""async (chunkSize) => {
            const { hashFile } = await import("/static/js/hashing.js");
            return await hashFile(document.getElementById("scratch").files[0], chunkSize);
        }""", chunk_size)
        assert result["engine"] == hasher
        assert (result["fingerprint"], result["chunks"]) == (expected, chunks)
        assert not app.problems
    finally:
        await browser.close()


async def test_opened_by_a_lan_name_the_app_says_at_once_why_the_store_is_out_of_reach(playwright_driver,
                                                                                        web_gateway, store):
    """The gateway hands out URLs of the store on 127.0.0.1 (started for this machine only); the page came
    from lan.test. The upload stops at once with what is wrong, and no chunk is sent to the loopback."""
    port = web_gateway.config.port
    browser = await launch_browser(playwright_driver, ["--host-resolver-rules=MAP lan.test 127.0.0.1"])
    try:
        app = await WebApp.open(browser, f"http://lan.test:{port}")
        await app.sign_up()
        await app.pick(file_payload("notes.txt", os.urandom(1000)))
        # In the upload's own status (the uploads panel's live region says it too, for screen readers).
        status = app.page.locator(".upload-item .upload-status")
        await expect(status.get_by_text("is a loopback address")).to_be_visible()
        await expect(status.get_by_text("./dev up --address")).to_be_visible()
        assert app.store_puts(store.endpoint) == []
    finally:
        await browser.close()


async def test_phone_width_has_no_sideways_scrolling(browser, web_gateway):
    context = await browser.new_context(viewport={"width": 360, "height": 740})
    page = await context.new_page()
    await page.goto(web_gateway.url + "/")
    app = WebApp(page, web_gateway.url)
    await app.sign_up()
    await app.pick(file_payload("a-rather-long-file-name-that-could-push-the-layout-sideways.pdf", b"%PDF", "application/pdf"))
    await app.wait_uploaded("a-rather-long-file-name-that-could-push-the-layout-sideways.pdf")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Keyboard: Tab reaches the upload control and the row's buttons.
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    names = []
    for _ in range(30):
        await page.keyboard.press("Tab")
        names.append(await page.evaluate("document.activeElement.id || document.activeElement.textContent"))
        if "upload-input" in names and "Download" in names:
            break
    assert "upload-input" in names and "Download" in names, names


async def test_the_app_has_a_router_one_state_and_its_upload_states_named_once(browser, web_gateway):
    """The structure the views build on: the route from the URL's fragment, in the one state module."""
    app = await WebApp.open(browser, web_gateway.url)
    await app.page.goto(web_gateway.url + "/#/no-such-place")
    await app.sign_up()
    # An unknown place is the files view, and the URL says so (in place: no extra history entry).
    await expect(app.page).to_have_url(web_gateway.url + "/#/")
    modules = f"/assets/{webapp.VERSION}/js"
    seen = await app.page.evaluate("""async (base) => {
        const { state } = await import(`${base}/state.js`);
        const router = await import(`${base}/router.js`);
        const upload = await import(`${base}/upload.js`);
        return {
            route: state.route, username: state.session.username, uploads: Boolean(state.uploads),
            files: router.href({ view: "files", folder: "root" }), parsed: router.parse("#/files?x=1"),
            odd: router.parse("#/%E0%A4%A"),
            states: upload.State, working: [...upload.WORKING].sort(), over: [...upload.OVER].sort(),
        };
    }""", modules)
    root = {"view": "files", "folder": "root"}
    assert seen["route"] == root and seen["username"] == app.username and seen["uploads"]
    assert seen["files"] == "#/" and seen["parsed"] == root and seen["odd"] == root
    assert set(seen["states"].values()) == {
        "waiting", "hashing", "starting", "sending", "finishing", "paused", "done", "failed", "cancelled"}
    assert seen["working"] == ["finishing", "hashing", "sending", "starting"]
    assert seen["over"] == ["cancelled", "done", "failed"]
    assert not app.problems
