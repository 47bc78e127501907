"""Honest progress in the web app (issue 25), in Chromium against the real store: an upload whose chunks
the store stops taking shows as stalled ("Waiting for the store…"), with no speed or time left, and goes
on by itself once the store takes bytes again. A gate (tests/gates.py) holds the store's PUTs: the test
waits on what the gate and the page say, never on the clock; the page's own clock (Playwright's) is moved
past the stall time instead of the test waiting it out."""
from __future__ import annotations

import os
import re

import pytest
from playwright.async_api import expect

from tests.browser import (  # noqa: F401 - fixtures
    WEB_CHUNK_SIZE,
    WebApp,
    browser,
    file_payload,
    playwright_driver,
)
from tests.gates import Gate

STALL_SECONDS = 10  # gateway/web/js/upload.js's STALL_MS


@pytest.fixture
async def store_gate(store):
    gate = await Gate(store.endpoint, methods=("PUT",)).start()
    yield gate
    await gate.stop()


async def stall_seen(page, status, jumps: int = 10) -> None:
    """Move the page's clock past the stall time until the page says it is waiting for the store.

    The held chunks' bytes still go into the gate's socket buffers for a while after the gate holds
    their requests (the browser counts them as sent), so one jump may come before the last of them:
    the next one is past it."""
    for _ in range(jumps):
        await page.clock.fast_forward((STALL_SECONDS + 2) * 1000)
        try:
            await expect(status).to_contain_text("Waiting for the store…", timeout=3000)
            return
        except AssertionError:
            continue
    await expect(status).to_contain_text("Waiting for the store…")


async def test_a_stalled_store_shows_as_waiting_then_the_upload_goes_on_by_itself(browser, make_gateway, cdn,
                                                                                  store_gate, tmp_path):
    gateway = await make_gateway(cdn_url=cdn.url, chunk_size=WEB_CHUNK_SIZE, s3_public_endpoint=store_gate.url)
    app = await WebApp.open(browser, gateway.url)
    await app.sign_up()
    await app.page.clock.install()  # the page's timers, moved on below instead of waited out
    store_gate.hold_after(1)  # the first chunk goes through, the other two wait at the gate
    path = tmp_path / "stuck.bin"  # a path, not a payload: 15 MB through the driver's protocol took 5 s
    path.write_bytes(os.urandom(3 * WEB_CHUNK_SIZE))
    await app.pick(str(path))
    await store_gate.holding(2)

    item = app.page.locator(".upload-item").filter(has_text="stuck.bin")
    status = item.locator(".upload-status")
    bar = item.get_by_role("progressbar", name="Upload of stuck.bin")
    await stall_seen(app.page, status)
    await expect(bar).to_have_attribute("aria-valuetext", re.compile(r"^\d+%, waiting for the store$"))
    text = await status.text_content()
    assert " left" not in text and "/s" not in text, f"no speed or time left while stalled: {text!r}"

    store_gate.open()  # the held chunks reach the store now: nothing to press
    await app.wait_uploaded("stuck.bin")
    await expect(status).not_to_contain_text("Waiting for the store")
    assert len(store_gate.answered) == 3 and set(store_gate.answered) == {200}
    assert not app.problems
