"""Shared links: anyone with a link's URL downloads one file, until the link expires or is revoked.

Tokens. A link's token (the last part of ``<public_url>/s/<token>``) is an
HMAC-SHA256, under a key derived from ``GATEWAY_JWT_SECRET``, of the link's
id, itself 128 random bits: 256 bits nobody can guess or compute without the
key. The database never holds a token: only its SHA-256 (``token_hash``), the
index a visitor's token is looked up by. So a copy of the database gives no
working link, yet the owner's listing shows every link's URL (the contract's
link object has ``url``): the gateway computes it again from the id. A
visitor's token is accepted only if it is the one the current key gives for
the link it names, so a new ``GATEWAY_JWT_SECRET`` ends every link, as it ends
every access token.

Who may do what: only the file's owner creates, lists and revokes its links
(404 for anyone else, as for the file); anyone with the token reads the file's
name, size and type and gets download URLs, after the password when the link
has one, and sees the file's thumbnail (an image's or a PDF's, once made) when
the link has no password: a thumbnail shows the content, which a password keeps
for those who know it, and the page has no step after the password but the
download itself. Nothing about a link is cached: deleting the file (its links go with
it, ON DELETE CASCADE) or revoking the link ends it for the next request.

Wrong passwords are throttled per link (gateway/core/throttle.py: counted in
the database, across every gateway process): after ``link_password_attempts``
of them within ``link_password_window`` seconds, every attempt, the right
password too, is refused until the window has passed (so the answer tells a
guesser nothing). Each attempt is counted *before* its password is checked
(scrypt takes a while), so a burst of concurrent guesses cannot outrun the
count, and forgiven when it was right, so visitors who know the password are
never throttled by their own downloads, nor do they wipe out a guesser's count.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import timedelta

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_now, timestamp
from gateway.core.downloads import download_url
from gateway.core.errors import (
    LinkExpired, LinkNotFound, LinkRevoked, NotUploaded, PasswordRequired, TooManyAttempts, WrongLinkPassword,
)
from gateway.core.passwords import hash_password, verify_password
from gateway.core.permissions import Permissions, owned_for_change
from gateway.core.throttle import Limit, Throttle
from gateway.core.thumbnails import Thumbnails, wants_thumbnail
from gateway.db import Database, Row
from gateway.db import links as links_db
from protocol.states import FileStatus

log = structlog.get_logger("gateway.links")

# Domain separation: the link key is not the JWT key, nor any other key made from it.
KEY_LABEL = b"dropbox-shared-link-tokens-v1"
# What link_token makes: 43 base64url characters (256 bits). Anything else is no token of ours.
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
# The longest a link may live when it expires at all (ten years).
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600
# The longest link password taken (the API refuses longer; the page treats one as wrong).
MAX_PASSWORD = 1024


def link_key(config: Config) -> bytes:
    return hmac.new(config.jwt_secret.encode(), KEY_LABEL, hashlib.sha256).digest()


def link_token(key: bytes, link_id: str) -> str:
    digest = hmac.new(key, link_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_url(config: Config, token: str) -> str:
    """The page for people (gateway/http/routes/link_page.py); the same token works on the API."""
    return f"{config.public_url.rstrip('/')}/s/{token}"


class Links:
    def __init__(self, config: Config, db: Database, permissions: Permissions, clock: Clock, thumbnails: Thumbnails):
        self.config = config
        self.db = db
        self.permissions = permissions
        self.clock = clock
        self.thumbnails = thumbnails
        self.key = link_key(config)
        self.guesses = Throttle(
            db, clock, "link-password", Limit(config.link_password_attempts, config.link_password_window)
        )

    def _with_token(self, row: Row) -> Row:
        """The link row with its token: what the link object's ``url`` is made of. Only owners see it."""
        return {**row, "token": link_token(self.key, row["id"])}

    # --- the owner's side -------------------------------------------------------------------------

    async def create(self, owner_id: int, file_id: str, expires_in: int | None, password: str | None) -> Row:
        """A new link to an uploaded file of ``owner_id``; FileNotFound for anyone else, NotUploaded before."""
        password_hash = await hash_password(password) if password is not None else None
        link_id = secrets.token_hex(16)
        now = self.clock()
        link = {
            "id": link_id,
            "file_id": file_id,
            "token_hash": token_hash(link_token(self.key, link_id)),
            "password_hash": password_hash,
            "expires_at": timestamp(now + timedelta(seconds=expires_in)) if expires_in is not None else None,
            "created_at": timestamp(now),
            "revoked_at": None,
            "download_count": 0,
        }
        async with self.db.transaction() as conn:
            file = await owned_for_change(conn, owner_id, file_id)
            if file["status"] != FileStatus.UPLOADED:
                raise NotUploaded(file["status"])
            await links_db.insert_link(conn, link)
        log.info("link_created", link_id=link_id, file_id=file_id, expires_at=link["expires_at"],
                 has_password=password_hash is not None)
        return self._with_token(link)

    async def of_file(self, owner_id: int, file_id: str) -> list[Row]:
        """The file's links that are not revoked, newest first; FileNotFound for anyone but the owner."""
        await self.permissions.owned(owner_id, file_id)
        return [self._with_token(row) for row in await links_db.live_links_of(self.db, file_id)]

    async def revoke(self, user_id: int, link_id: str) -> None:
        """The link stops working at once; again is fine. LinkNotFound for anyone but the file's owner."""
        link = await links_db.link_by_id(self.db, link_id)
        if link is None or link["owner_id"] != user_id:
            raise LinkNotFound(link_id)
        revoked = await links_db.revoke(self.db, link_id, stamp_now(self.clock))
        log.info("link_revoked", link_id=link_id, file_id=link["file_id"], already=not revoked)

    # --- the visitor's side -----------------------------------------------------------------------

    async def open(self, token: str) -> Row:
        """The live link ``token`` names, with its file's facts: LinkNotFound, LinkRevoked or LinkExpired."""
        if not TOKEN.fullmatch(token):
            raise LinkNotFound()
        link = await links_db.link_by_token_hash(self.db, token_hash(token))
        # The token must be the current key's for this link: a new key ends every link.
        if link is None or not hmac.compare_digest(link_token(self.key, link["id"]), token):
            raise LinkNotFound()
        if link["revoked_at"] is not None:
            raise LinkRevoked()
        if link["expires_at"] is not None and link["expires_at"] <= stamp_now(self.clock):
            raise LinkExpired(link["expires_at"])
        if link["status"] != FileStatus.UPLOADED:  # links are made to uploaded files, which stay so; never serve else
            raise LinkNotFound()
        return link

    async def thumbnail(self, link: Row) -> tuple[str, int] | None:
        """(signed CDN URL, expiry) of the thumbnail of the file an open link (:meth:`open`) shares: only
        when the link has no password (see the module docstring) and the content has a thumbnail."""
        if link["password_hash"] is not None or not wants_thumbnail(link["file_type"], link["file_name"]):
            return None
        return (await self.thumbnails.urls([link["fingerprint"]])).get(link["fingerprint"])

    async def download(self, token: str, password: str | None) -> tuple[str, int]:
        """(CDN download URL, its expiry in unix seconds), counted as a download of the link.

        A link with a password: PasswordRequired without one, WrongLinkPassword for a
        wrong one, TooManyAttempts once wrong ones pass the limit (see the module
        docstring).
        """
        link = await self.open(token)
        if link["password_hash"] is not None:
            await self._check_password(link, password)
        if not await links_db.count_download(self.db, link["id"], stamp_now(self.clock)):
            await self.open(token)  # revoked or expired since: say which
            raise LinkNotFound()
        log.info("link_download", link_id=link["id"], file_id=link["file_id"])
        return download_url(self.config, link["fingerprint"], link["file_name"], link["file_type"])

    async def _check_password(self, link: Row, password: str | None) -> None:
        """Under the link's throttle (see the module docstring)."""
        if password is None:
            raise PasswordRequired()
        retry_after = await self.guesses.count_attempt(link["id"])  # counted before it is checked
        if retry_after is not None:
            log.warning("link_password_throttled", link_id=link["id"], retry_after=retry_after)
            raise TooManyAttempts(retry_after, "this link")
        if not await verify_password(password, link["password_hash"]):
            log.info("link_wrong_password", link_id=link["id"])
            raise WrongLinkPassword()
        await self.guesses.forgive(link["id"])
