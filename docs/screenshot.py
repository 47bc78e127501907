"""Take the README's screenshots of the web app: ``.venv/bin/python docs/screenshot.py``.

Starts a throwaway stack (bench/stack.py: store, gateway, CDN tier), signs up
two users in headless Chromium, uploads and shares a few files, and writes
docs/webapp.png (desktop, light), docs/webapp-dark.png and docs/webapp-phone.png.
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.async_api import async_playwright, expect  # noqa: E402

from bench.stack import BenchStack  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS, WebApp  # noqa: E402

MIB = 1024 * 1024


async def sign_up(page, username: str) -> None:
    await WebApp(page, page.url).sign_up(username)


async def upload(page, files: list[Path]) -> None:
    await page.get_by_label("Upload files").set_input_files([str(f) for f in files])
    for f in files:
        bar = page.get_by_role("progressbar", name=f"Upload of {f.name}")
        await expect(bar).to_have_attribute("aria-valuenow", "100", timeout=120_000)


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="webapp-shot-"))
    sizes = {"Quarterly report.pdf": 3 * MIB, "Team offsite.mov": 14 * MIB, "notes.txt": 2048}
    for name, size in sizes.items():
        (work / name).write_bytes(os.urandom(size))
    with BenchStack(chunk_size=5 * MIB, with_cdn=True) as stack:
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            alice = await (await browser.new_context()).new_page()
            await alice.goto(stack.gateway_url + "/")
            await sign_up(alice, "alice")
            await upload(alice, [work / name for name in sizes])
            bob = await (await browser.new_context()).new_page()
            await bob.goto(stack.gateway_url + "/")
            await sign_up(bob, "bob")
            shared = work / "Budget 2027.xlsx"
            shared.write_bytes(os.urandom(700_000))
            await upload(bob, [shared])
            row = bob.locator("#my-files").get_by_role("row").filter(has_text=shared.name)
            await row.get_by_role("button", name="Share").click()
            await bob.get_by_label("Share with").fill("alice")
            await bob.get_by_role("dialog").get_by_role("button", name="Share", exact=True).click()
            await expect(bob.get_by_role("dialog")).to_contain_text("Shared with alice")

            for scheme, viewport, out in (
                ("light", {"width": 1200, "height": 860}, "webapp.png"),
                ("dark", {"width": 1200, "height": 860}, "webapp-dark.png"),
                ("light", {"width": 390, "height": 844}, "webapp-phone.png"),
            ):
                context = await browser.new_context(viewport=viewport, color_scheme=scheme, device_scale_factor=1)
                page = await context.new_page()
                await page.goto(stack.gateway_url + "/")
                await WebApp(page, stack.gateway_url).log_in("alice")
                await expect(page.locator("#shared-files")).to_contain_text(shared.name)
                if out == "webapp.png":
                    # An upload in progress, paused, to show its progress bar.
                    big = work / "Photos 2026.zip"
                    big.write_bytes(os.urandom(40 * MIB))
                    cdp = await context.new_cdp_session(page)
                    await cdp.send("Network.enable")
                    await cdp.send("Network.emulateNetworkConditions", {
                        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 4 * MIB})
                    await page.get_by_label("Upload files").set_input_files(str(big))
                    bar = page.get_by_role("progressbar", name=f"Upload of {big.name}")
                    await expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^[3-9]\d$"), timeout=60_000)
                await page.screenshot(path=str(ROOT / "docs" / out), full_page=out != "webapp-phone.png")
                print("wrote", ROOT / "docs" / out)
                await context.close()
            await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
