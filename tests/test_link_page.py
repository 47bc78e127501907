"""The shared link's page (``/s/{token}``) as HTML, on the in-process gateway (tests/app_fixtures.py).

test_links.py downloads through it on the real store and CDN tier; here is what the page shows.
"""
from __future__ import annotations

import asyncio
import html
import re

from tests.app_fixtures import app_gateway as gateway, make_app as make_gateway  # noqa: F401 - in-process
from tests.harness import Api, upload
from tests.images import encoded

CHUNK = 8 * 1024 * 1024  # the gateway's default
FILES = "/dropbox/v1/files"
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


async def link_page(api: Api, http, name: str, gateway=None, **link: object) -> tuple[int, str]:
    """The page of a new link to a new file named ``name`` (its status and HTML); POSTed with ``link["form"]``.

    With ``gateway``, the name is written into the database as a v1.1 gateway could have taken it (the
    tree refuses control characters in new names since v1.2, but files migrated in keep theirs).
    """
    owner = await api.signup()
    file = await upload(owner, b"MZ not a picture", CHUNK, file_name="placeholder" if gateway else name)
    if gateway is not None:
        await gateway.core.db.execute("UPDATE nodes SET name = :name WHERE id = :id", {"name": name, "id": file["file_id"]})
    url = (await owner.post(f"{FILES}/{file['file_id']}/links", json=link.get("json"))).body["url"]
    method = "POST" if "form" in link else "GET"
    async with http.request(method, url, data=link.get("form"), allow_redirects=False) as page:
        return page.status, await page.text()


def heading(page: str) -> str:
    match = re.search(r'<h1 class="file-name">(.*?)</h1>', page)
    assert match, page
    return match.group(1)


async def test_a_name_that_would_show_reversed_is_shown_in_its_real_order_and_marked(gateway, api, http):
    """U+202E (right-to-left override) shows ``photo<U+202E>gnp.exe`` as ``photoexe.png``: not on this page."""
    status, page = await link_page(api, http, "photo\u202egnp.exe")
    assert status == 200
    assert not any(control in page for control in BIDI_CONTROLS)  # in the title neither
    assert heading(page) == '<bdi>photo<span class="hidden-char" title="U+202E">\ufffd</span>gnp.exe</bdi>'
    assert "<title>photo\ufffdgnp.exe - shared file</title>" in page
    assert '<p class="notice">This name contains an invisible character that can change how a name is displayed, ' \
           "shown here as \ufffd." in page

    # Every one of them, and control characters; escaped HTML stays escaped; the page shown again after a
    # wrong password is the same.
    name = "<b>" + "".join(f"{c}x" for c in BIDI_CONTROLS) + "\x1b\x85.txt"
    status, page = await link_page(api, http, name, gateway, json={"password": "secret"}, form={"password": "wrong"})
    assert status == 403 and "That password is not right" in page
    assert not any(control in page for control in BIDI_CONTROLS + "\x1b\x85")
    shown = re.sub(r'<span class="hidden-char" title="U\+([0-9A-F]{4})">\ufffd</span>', r"[\1]", heading(page))
    assert shown == "<bdi>&lt;b&gt;" + "".join(f"[{ord(c):04X}]x" for c in BIDI_CONTROLS) + "[001B][0085].txt</bdi>"
    assert "This name contains 14 invisible characters" in page


async def test_names_in_any_script_are_shown_as_they_are_isolated(api, http):
    for name in ("holiday.mov", "تقرير.pdf", "רשימה (2).txt", "a\u200db 👩\u200d💻.txt"):
        status, page = await link_page(api, http, name)
        assert status == 200 and heading(page) == f"<bdi>{name}</bdi>"
        assert 'class="notice"' not in page and "\ufffd" not in page


async def test_a_link_without_a_password_shows_the_files_thumbnail_and_one_with_a_password_does_not(gateway, api, http):
    """The thumbnail is the one every reader of the file is given (a signed CDN URL); a link with a password
    gives none, on the page or in the API, before or after a password: it would show the content."""
    owner = await api.signup()
    photo = await upload(owner, encoded("JPEG", (640, 480)), CHUNK, file_name="beach.jpg", file_type="image/jpeg")
    notes = await upload(owner, b"no picture here", CHUNK, file_name="notes.txt", file_type="text/plain")
    assert await asyncio.wait_for(gateway.core.thumbnails.settled(photo["fingerprint"]), 60) == "made"
    thumbnail = (await owner.get(f"{FILES}/{photo['file_id']}")).body["thumbnail_url"]

    async def shown(file: dict, form: dict | None = None, **link: object) -> tuple[dict, str, str]:
        """(what the API says of a new link to the file, its page (POSTed with ``form``), the page's CSP)."""
        url = (await owner.post(f"{FILES}/{file['file_id']}/links", json=link)).body["url"]
        info = await api.get(f"/dropbox/v1/links/{url.rsplit('/', 1)[1]}")
        async with http.request("POST" if form else "GET", url, data=form, allow_redirects=False) as page:
            return info.body, await page.text(), page.headers["Content-Security-Policy"]

    info, page, csp = await shown(photo)
    assert info["thumbnail_url"] == thumbnail and info["thumbnail_url_expires_at"] > 0
    assert f'<img class="link-thumb" src="{html.escape(thumbnail)}" alt="Thumbnail of beach.jpg">' in page
    assert f"img-src 'self' {gateway.config.cdn_url};" in csp
    for file, link, form in ((photo, {"password": "secret"}, None), (photo, {"password": "secret"}, {"password": "no"}),
                             (notes, {}, None)):
        info, page, _ = await shown(file, form, **link)
        assert "thumbnail_url" not in info and "<img" not in page, (file["file_name"], link, form)
