"""``/s/{token}``: the shared link's page for people, HTML without a line of script.

``GET`` names the file and its size and shows a Download button (with a
password field when the link has a password) in a plain form that ``POST``s
to the same address, and the file's thumbnail when it is an image or a PDF
that has one and the link has no password (gateway/core/links.py says why not
then), from the CDN tier by a signed URL like every thumbnail. The ``POST``
answers 303 to a CDN download URL, so a browser, or any HTTP client that
follows redirects, downloads without JavaScript. A wrong password shows the
page again with a message (403), too many of them a page that says how long to
wait (429, ``Retry-After``); revoked and unknown links answer 404, expired ones
410, each with words that say so. The page is for people, so it answers HTML for these too; the same
token works on the JSON API (gateway/http/routes/links.py).

Everything the page shows that came from a user (the file name and type) is
escaped text. The name is shown isolated (``<bdi>``) and in its real order:
characters that do not show but change how a name is shown (Unicode's
bidirectional controls, so that ``photo<U+202E>gnp.exe`` does not read as
``photoexe.png``, and control characters) are each shown as the replacement
character U+FFFD, its code point in a tooltip, and a note under the name says
so. Every answer carries a Content-Security-Policy that allows no script at
all, styles from this origin only, images from this origin and the CDN tier
(the thumbnail), and form submissions only to this origin and the CDN tier
(the 303's target); ``Referrer-Policy: no-referrer`` keeps
the token (in the page's URL) from the CDN and anyone the page links to;
``Cache-Control: no-store`` keeps it out of caches.
"""
from __future__ import annotations

import html
import re

from aiohttp import web

from gateway.config import Config, origin
from gateway.core.errors import (
    DomainError, LinkExpired, LinkNotFound, LinkRevoked, PasswordRequired, TooManyAttempts, WrongLinkPassword,
)
from gateway.core.links import MAX_PASSWORD
from gateway.db import Row
from gateway.http import appkeys
from gateway.http.middlewares import public

routes = web.RouteTableDef()

# The web app's stylesheet (gateway/web/style.css), which carries this page's classes too.
STYLESHEET_PATH = "/static/style.css"

# Characters that do not show but change how a name is shown: C0 and C1 controls, and Unicode's Bidi_Control
# characters (ALM, LRM, RLM; the embeddings and overrides U+202A-U+202E; the isolates U+2066-U+2069).
HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MARK = "\N{REPLACEMENT CHARACTER}"

# What each refusal tells a person, and the status it answers with.
REFUSALS: dict[type[DomainError], tuple[int, str, str]] = {
    LinkNotFound: (404, "This link does not work", "There is no file at this address. Check that you have the "
                   "whole link; the file may also have been deleted."),
    LinkRevoked: (404, "This link was revoked", "The person who shared this file has turned the link off. "
                  "Ask them for a new one."),
    LinkExpired: (410, "This link has expired", "The link was only valid for a limited time. "
                  "Ask the person who shared the file for a new one."),
}


def page_headers(config: Config) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'self'; img-src 'self' {origin(config.cdn_url)}; "
            f"form-action 'self' {origin(config.cdn_url)}; frame-ancestors 'none'; base-uri 'none'"
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }


def human_size(size: int) -> str:
    """1536 -> "1.5 KiB"; the page shows the exact byte count beside it."""
    value, unit = float(size), "bytes"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def document(title: str, body: str) -> str:
    """A whole page; ``title`` is escaped here, ``body`` must already be safe HTML."""
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"robots\" content=\"noindex, nofollow\">\n"
        f"<title>{html.escape(title)}</title>\n"
        f"<link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">\n"
        f"</head>\n<body>\n<main class=\"card link-page\">\n{body}</main>\n</body>\n</html>\n"
    )


def shown_name(name: str) -> str:
    """The name as plain text shows it (the page's title): each hidden character as a replacement character."""
    return HIDDEN.sub(MARK, name)


def name_heading(name: str) -> str:
    """The name as the page's heading (safe HTML), isolated, each hidden character marked; then a note if any."""
    marked, hidden = HIDDEN.subn(
        lambda found: f"<span class=\"hidden-char\" title=\"U+{ord(found.group()):04X}\">{MARK}</span>", html.escape(name),
    )
    heading = f"<h1 class=\"file-name\"><bdi>{marked}</bdi></h1>\n"
    if not hidden:
        return heading
    characters = "an invisible character" if hidden == 1 else f"{hidden} invisible characters"
    return heading + (
        f"<p class=\"notice\">This name contains {characters} that can change how a name is displayed, shown "
        f"here as {MARK}. Check that the name is what you expect before you open the file.</p>\n"
    )


def shared_title(link: Row) -> str:
    return f"{shown_name(link['file_name'])} - shared file"


def link_body(token: str, link: Row, message: str | None = None, thumbnail: str | None = None) -> str:
    """The file's name, size and type, its thumbnail when given (a signed CDN URL), and the download form
    (with a password field when needed)."""
    e = html.escape
    facts = f"{e(human_size(link['file_size']))} ({link['file_size']:,} bytes) &middot; {e(link['file_type'])}"
    if link["expires_at"]:
        facts += f" &middot; link valid until {e(link['expires_at'][:16].replace('T', ' '))} UTC"
    password = ""
    if link["password_hash"] is not None:
        password = (
            "<div class=\"field\">\n<label for=\"password\">Password</label>\n"
            f"<input id=\"password\" name=\"password\" type=\"password\" required maxlength=\"{MAX_PASSWORD}\" "
            "autocomplete=\"off\" autofocus>\n"
            "<p class=\"hint\">The person who shared this file set a password for it.</p>\n</div>\n"
        )
    alert = f"<p class=\"message error\" role=\"alert\">{e(message)}</p>\n" if message else ""
    picture = ""
    if thumbnail is not None:
        picture = (f"<img class=\"link-thumb\" src=\"{e(thumbnail)}\" "
                   f"alt=\"Thumbnail of {e(shown_name(link['file_name']))}\">\n")
    return (
        "<p class=\"hint\">Someone shared a file with you</p>\n"
        f"{name_heading(link['file_name'])}"
        f"<p class=\"file-facts\">{facts}</p>\n{picture}{alert}"
        f"<form method=\"post\" action=\"/s/{e(token)}\" class=\"stack\">\n{password}"
        "<button type=\"submit\" class=\"button primary\">Download</button>\n</form>\n"
    )


async def link_view(request: web.Request, token: str, link: Row, status: int = 200, message: str | None = None,
                    **headers: str) -> web.Response:
    """The link's page: what :func:`link_body` shows, with the thumbnail the link may show."""
    config, links = request.app[appkeys.CONFIG], request.app[appkeys.CORE].links
    thumbnail = await links.thumbnail(link)
    body = link_body(token, link, message, thumbnail[0] if thumbnail else None)
    return page(config, status, shared_title(link), body, **headers)


def page(config: Config, status: int, title: str, body: str, **headers: str) -> web.Response:
    return web.Response(
        status=status, text=document(title, body), content_type="text/html", charset="utf-8",
        headers={**page_headers(config), **headers},
    )


def refusal_page(config: Config, exc: DomainError) -> web.Response:
    status, heading, explanation = REFUSALS[type(exc)]
    body = f"<h1>{html.escape(heading)}</h1>\n<p>{html.escape(explanation)}</p>\n"
    return page(config, status, heading, body)


@routes.get("/s/{token}")
@public
async def link_page(request: web.Request) -> web.Response:
    config, token = request.app[appkeys.CONFIG], request.match_info["token"]
    try:
        link = await request.app[appkeys.CORE].links.open(token)
    except (LinkNotFound, LinkRevoked, LinkExpired) as exc:
        return refusal_page(config, exc)
    return await link_view(request, token, link)


@routes.post("/s/{token}")
@public
async def link_page_download(request: web.Request) -> web.StreamResponse:
    """303 to the CDN download URL; the page again, with what went wrong, otherwise."""
    config, token = request.app[appkeys.CONFIG], request.match_info["token"]
    links = request.app[appkeys.CORE].links
    try:
        form = await request.post()
    except ValueError:  # a form body that does not parse (multipart without a boundary, say)
        return await form_unreadable(request, token)
    password = form.get("password")
    if not isinstance(password, str) or not password:
        password = None  # an empty field is no password: "password required", not "wrong"
    elif len(password) > MAX_PASSWORD:
        password = password[:MAX_PASSWORD]  # longer than any link password can be: wrong, like any other
    try:
        url, _ = await links.download(token, password)
    except (LinkNotFound, LinkRevoked, LinkExpired) as exc:
        return refusal_page(config, exc)
    except (PasswordRequired, WrongLinkPassword, TooManyAttempts) as exc:
        return await password_refused(request, token, exc)
    raise web.HTTPSeeOther(url, headers=page_headers(config))


async def form_unreadable(request: web.Request, token: str) -> web.Response:
    """400: the page again; a browser's own form never gets here."""
    config = request.app[appkeys.CONFIG]
    try:
        link = await request.app[appkeys.CORE].links.open(token)
    except (LinkNotFound, LinkRevoked, LinkExpired) as exc:
        return refusal_page(config, exc)
    return await link_view(request, token, link, 400, "The form could not be read. Reload the page and try again.")


async def password_refused(request: web.Request, token: str, exc: DomainError) -> web.Response:
    """The page again, saying what was wrong with the password (401, 403) or how long to wait (429)."""
    link = await request.app[appkeys.CORE].links.open(token)
    if isinstance(exc, TooManyAttempts):
        minutes = max(1, round(exc.retry_after / 60))
        message = (f"Too many wrong passwords were tried for this link. Try again in about {minutes} "
                   f"minute{'s' if minutes != 1 else ''}.")
        return await link_view(request, token, link, 429, message, **{"Retry-After": str(exc.retry_after)})
    status, message = (401, "Enter the password to download this file.") if isinstance(exc, PasswordRequired) \
        else (403, "That password is not right. Try again.")
    return await link_view(request, token, link, status, message)
