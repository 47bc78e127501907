"""The web app's flows on the contract v1.1 APIs: shared links (created in the app, opened with no
account, revoked), log-out revoking the token, and the password change."""
from __future__ import annotations

import os
import re

from playwright.async_api import expect

from tests.browser import PASSWORD, WebApp, browser, file_payload, playwright_driver, web_gateway  # noqa: F401
from tests.harness import Api

async def session_token(app: WebApp) -> str:
    return await app.page.evaluate("JSON.parse(localStorage.getItem('files.session')).token")


async def test_a_shared_link_opens_with_no_account_and_can_be_revoked(browser, web_gateway, http):
    data = os.urandom(200_000)
    owner = await WebApp.open(browser, web_gateway.url)
    await owner.sign_up()
    await owner.pick(file_payload("poster.pdf", data, "application/pdf"))
    await owner.wait_uploaded("poster.pdf")
    await owner.file_row("poster.pdf").get_by_role("button", name="Share").click()
    dialog = owner.page.get_by_role("dialog")
    await dialog.get_by_role("button", name="Create link").click()
    link = dialog.get_by_label("Link", exact=True)
    await expect(link).to_have_value(re.compile(rf"^{re.escape(web_gateway.url)}/s/[A-Za-z0-9_-]{{22,}}$"))
    url = await link.input_value()
    await expect(dialog.get_by_role("listitem").filter(has_text=url)).to_contain_text("never expires")

    stranger = await (await browser.new_context(accept_downloads=True)).new_page()
    await stranger.goto(url)
    await expect(stranger.get_by_text("poster.pdf")).to_be_visible()
    async with stranger.expect_download() as info:
        await stranger.get_by_role("button", name=re.compile("Download")).click()
    assert (await (await info.value).path()).read_bytes() == data

    await dialog.get_by_role("listitem").filter(has_text=url).get_by_role("button", name="Revoke").click()
    await expect(dialog.get_by_role("listitem").filter(has_text=url)).to_have_count(0)
    token = url.rsplit("/", 1)[1]
    async with http.get(f"{web_gateway.url}/dropbox/v1/links/{token}") as resp:
        assert resp.status == 404


async def test_a_link_with_an_expiry_and_a_password(browser, web_gateway, http):
    owner = await WebApp.open(browser, web_gateway.url)
    await owner.sign_up()
    await owner.pick(file_payload("secret.txt", b"s3cret"))
    await owner.wait_uploaded("secret.txt")
    await owner.file_row("secret.txt").get_by_role("button", name="Share").click()
    dialog = owner.page.get_by_role("dialog")
    await dialog.get_by_label("Expires").select_option(label="In 1 day")
    await dialog.get_by_label("Password (optional)").fill("open sesame")
    await dialog.get_by_role("button", name="Create link").click()
    url = await dialog.get_by_label("Link", exact=True).input_value()
    item = dialog.get_by_role("listitem").filter(has_text=url)
    await expect(item).to_contain_text("expires")
    await expect(item).not_to_contain_text("no password")
    async with http.get(f"{web_gateway.url}/dropbox/v1/links/{url.rsplit('/', 1)[1]}") as resp:
        body = await resp.json()
    assert body["has_password"] is True and body["expires_at"] is not None


async def test_log_out_revokes_the_token(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    token = await session_token(app)
    await app.page.get_by_role("button", name="Log out").click()
    await expect(app.page.get_by_role("button", name="Log in")).to_be_visible()
    me = await Api(http, web_gateway.url, token).get("/dropbox/v1/users/me")
    assert me.status == 401 and me.body["error"]["code"] == "token_revoked"


async def test_change_password(browser, web_gateway, http):
    app = await WebApp.open(browser, web_gateway.url)
    username = await app.sign_up()
    old_token = await session_token(app)
    await app.page.get_by_role("button", name="Account").click()
    dialog = app.page.get_by_role("dialog")
    await dialog.get_by_label("Current password").fill("wrong password")
    await dialog.get_by_label("New password").fill("a brand new passphrase")
    await dialog.get_by_role("button", name="Change password").click()
    await expect(dialog.get_by_role("alert")).to_have_text("The current password is wrong.")
    await dialog.get_by_label("Current password").fill(PASSWORD)
    await dialog.get_by_label("New password").fill("a brand new passphrase")
    await dialog.get_by_role("button", name="Change password").click()
    await expect(dialog.get_by_role("status")).to_have_text("Password changed.")
    await app.page.keyboard.press("Escape")
    # Still signed in, on a new token; the old one no longer works.
    assert await session_token(app) != old_token
    assert (await Api(http, web_gateway.url, old_token).get("/dropbox/v1/users/me")).status == 401
    await app.page.reload()
    await expect(app.page.get_by_role("button", name="Log out")).to_be_visible()
    await app.page.get_by_role("button", name="Log out").click()
    await app.page.get_by_label("Username").fill(username)
    await app.page.get_by_label("Password").fill(PASSWORD)
    await app.page.get_by_role("button", name="Log in").click()
    await expect(app.page.get_by_role("alert")).to_have_text("Wrong username or password.")
    await app.log_in(username, "a brand new passphrase")
