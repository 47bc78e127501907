"""The web app's sign-up form follows who may sign up (GET /dropbox/v1/config's ``signup``), in a real Chromium.

``invite``: the form asks for an Invitation code and sends it; ``closed``: no
sign-up at all, a sentence saying how accounts are made, logging in as usual.
(``open``, the default, is every other web test's sign-up.)
"""
from __future__ import annotations

from playwright.async_api import expect

from gateway.core.admin import Admin
from gateway.core.limits import Limits
from tests.browser import PASSWORD, WebApp, browser, playwright_driver  # noqa: F401 - fixtures
from tests.test_web_accessibility import violations as accessibility_violations


def admin_of(gateway) -> Admin:
    core = gateway.core
    return Admin(core.config, core.db, core.clock, core.accounts, core.sessions, Limits(core.config, core.db))


async def fill_sign_up(app: WebApp, username: str, code: str | None) -> None:
    page = app.page
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Email").fill(f"{username}@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    if code is not None:
        await page.get_by_label("Invitation code").fill(code)
    await page.get_by_role("button", name="Sign up").click()


async def test_invite_mode_asks_for_an_invitation_code_and_signs_up_with_it(browser, make_gateway):
    gateway = await make_gateway(signup="invite")
    app = await WebApp.open(browser, gateway.url)
    page = app.page
    code_field = page.get_by_label("Invitation code")
    await expect(code_field).to_be_visible()
    assert await accessibility_violations(page) == []
    await fill_sign_up(app, "invited-web", None)
    await expect(page.get_by_role("alert")).to_have_text("Fill in Invitation code.")
    await expect(code_field).to_be_focused()
    await fill_sign_up(app, "invited-web", "not-a-code")
    await expect(page.get_by_role("alert")).to_contain_text("unknown, used or expired")
    await expect(code_field).to_be_focused()

    code = (await admin_of(gateway).invite(expires_in=3600)).code
    await fill_sign_up(app, "invited-web", code)
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    await page.get_by_role("button", name="Log out").click()
    await fill_sign_up(app, "second-web", code)  # each code signs up one account
    await expect(page.get_by_role("alert")).to_contain_text("unknown, used or expired")
    # Logging in needs no code.
    await app.log_in("invited-web")
    assert not app.problems


async def test_closed_mode_has_no_sign_up_form_and_says_how_accounts_are_made(browser, make_gateway):
    gateway = await make_gateway(signup="closed")
    await admin_of(gateway).create_user("staff-web", "staff@example.com", PASSWORD)
    app = await WebApp.open(browser, gateway.url)
    page = app.page
    await expect(page.get_by_text("New accounts cannot be made here: whoever runs this server creates them.")).to_be_visible()
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign up")).to_have_count(0)
    await expect(page.get_by_label("Email")).to_have_count(0)
    await expect(page.get_by_label("Invitation code")).to_have_count(0)
    assert await accessibility_violations(page) == []
    await app.log_in("staff-web")
    assert not app.problems
