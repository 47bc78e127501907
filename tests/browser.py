"""A real browser for the web app's tests: Debian's Chromium driven by PyPI's playwright.

``playwright install`` cannot download browsers here, so the system's
/usr/bin/chromium is launched (``./dev test`` installs the package). The async
API, because the test gateway runs in the test's own event loop.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Page, Request, async_playwright, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MIB = 1024 * 1024
WEB_CHUNK_SIZE = 5 * MIB  # the smallest chunk size (S3's smallest part): multi-chunk files stay small
PASSWORD = "correct horse battery"


async def launch_browser(playwright, extra_args: list[str] | None = None) -> Browser:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: ./dev test installs Debian's chromium package")
    return await playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + (extra_args or [])
    )


@pytest.fixture
async def playwright_driver():
    async with async_playwright() as driver:
        yield driver


@pytest.fixture
async def browser(playwright_driver) -> AsyncIterator[Browser]:
    browser = await launch_browser(playwright_driver)
    yield browser
    await browser.close()


@pytest.fixture
async def web_gateway(make_gateway, cdn):
    """The gateway on the port the store answers CORS for, downloads through the test nginx."""
    return await make_gateway(cdn_url=cdn.url, chunk_size=WEB_CHUNK_SIZE)


@dataclass
class WebApp:
    """One browser tab on the web app, with the requests it made."""

    page: Page
    base_url: str
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    username: str = ""

    @classmethod
    async def open(cls, browser: Browser, base_url: str, path: str = "/", **context_options) -> WebApp:
        """A new tab on the app (or another of the gateway's pages, by ``path``); ``context_options`` for the
        browser context (``viewport``, ...)."""
        context = await browser.new_context(accept_downloads=True, **context_options)
        page = await context.new_page()
        app = cls(page, base_url)
        page.on("request", lambda request: app.requests.append(request))
        page.on("console", lambda message: app._console(message))
        page.on("pageerror", lambda error: app.problems.append(f"page error: {error}"))
        await page.goto(base_url + path)
        return app

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text or message.type == "error" and "Uncaught" in message.text:
            self.problems.append(message.text)

    async def sign_up(self, username: str | None = None, password: str = PASSWORD) -> str:
        username = username or "web-" + secrets.token_hex(4)
        await self.page.get_by_label("Username").fill(username)
        await self.page.get_by_label("Email").fill(f"{username}@example.com")
        await self.page.get_by_label("Password").fill(password)
        await self.page.get_by_role("button", name="Sign up").click()
        await expect(self.page.get_by_role("button", name="Log out")).to_be_visible()
        self.username = username
        return username

    async def log_in(self, username: str, password: str = PASSWORD) -> None:
        await self.page.get_by_label("Username").fill(username)
        await self.page.get_by_label("Password").fill(password)
        await self.page.get_by_role("button", name="Log in").click()
        await expect(self.page.get_by_role("button", name="Log out")).to_be_visible()
        self.username = username

    async def pick(self, *files) -> None:
        """Choose files in the `Upload files` input: paths, or playwright file payloads."""
        await self.page.get_by_label("Upload files").set_input_files(list(files))

    def file_row(self, name: str):
        return self.page.locator("#my-files").get_by_role("row").filter(has_text=name)

    async def wait_uploaded(self, name: str, timeout: float = 60_000) -> None:
        bar = self.page.get_by_role("progressbar", name=f"Upload of {name}").first
        await expect(bar).to_have_attribute("aria-valuenow", "100", timeout=timeout)
        await expect(self.file_row(name).get_by_text("Uploaded", exact=True)).to_be_visible(timeout=timeout)

    def store_puts(self, store_origin: str, since: int = 0) -> list[Request]:
        return [r for r in self.requests[since:] if r.method == "PUT" and r.url.startswith(store_origin + "/")]


def part_number(request: Request) -> int:
    return int(parse_qs(urlsplit(request.url).query)["partNumber"][0])


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def file_payload(name: str, data: bytes, mime: str = "application/octet-stream") -> dict:
    return {"name": name, "mimeType": mime, "buffer": data}


SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)
