"""Zips: a folder, or a selection of folders and files, downloaded as one zip built as it is sent.

Where the bytes flow. Every other download goes from the store through the CDN tier (nginx), which
only passes bytes on; a zip must be *made*: each member framed, its CRC-32 computed over every byte,
a central directory written at the end. nginx cannot do that, so the gateway does it here, with
zipstream-ng, reading each member straight from the store (never through the CDN tier, whose disk
cache a one-off sequential read of a whole tree would fill with content nobody asked for twice).
It is the one download the gateway carries, kept cheap on purpose:

- constant memory and no temporary file: the archive is stored (no compression: photos, videos and
  documents are compressed already, and deflating gigabytes would take the gateway's CPU), so its
  size is known before the first byte and sent as ``Content-Length``; the store is read one piece
  (PIECE_SIZE) at a time, and the next piece is read only once the client has taken the one before
  (aiohttp's write waits for the socket to drain);
- on the event loop, with no thread held: :class:`_Feed` hands zipstream-ng one piece at a time;
- bounded by ``zip_max_size`` (GATEWAY_ZIP_MAX_SIZE), checked when the zip URL is made and again when
  it is fetched.

Dates. Each member carries the date of its file or folder in the tree (``modified_at``), so what is
unzipped has the dates the user saw in the app, not the hour of the download. A zip's date fields are
DOS local time with no zone; they are written in UTC, as the gateway knows no user's zone (an
extended-timestamp field would carry the zone but change the sizes zipstream-ng computes).

Who may read what. The zip URL is a capability like a CDN download URL: signed (HMAC with a key
derived from the JWT secret), naming its user, its entries and its expiry (``download_url_ttl``),
so a browser can fetch it by navigating, without the access token. What it holds is decided when it
is fetched, as that user: the user's own live folders (what they hold now, trashed things left
out) and files the user may read (their own, shared with them). A name inside the zip is made of
the tree's names only, each a single path segment (no ``/``, ``\\``, ``..``, nothing absolute):
:func:`safe_segment` makes sure of it even for a name that was stored before the rules.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import unicodedata
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog
from zipstream import ZipStream

from gateway.config import Config
from gateway.core.clock import Clock, parse_stamp, stamp_now
from gateway.core.content import content_key
from gateway.core.errors import NodeNotFound, NotUploaded, ZipTooLarge, ZipUrlExpired, ZipUrlInvalid
from gateway.core.namespace import Namespace
from gateway.core.permissions import FILE_ID, Permissions
from gateway.db import Database
from gateway.db import nodes as nodes_db
from gateway.db.nodes import FILE, FOLDER, ROOT
from protocol import paths
from protocol.states import FileStatus
from storage import ObjectStore

log = structlog.get_logger("gateway.zips")

PIECE_SIZE = 1024 * 1024  # bytes read from the store at a time: what one zip holds in memory
MAX_ENTRIES = 250  # folders and files named by one zip URL: its ids must fit in a URL (about 5.4 KB)
ROOT_NAME = "All files"
SELECTION_NAME = "Files"
KEY_LABEL = b"dropbox-zip-urls-v1"
TICKET_HEAD = struct.Struct(">BQQ")  # version, user id, expires_at
TICKET_VERSION = 1
DOS_FIRST, DOS_LAST = datetime(1980, 1, 1), datetime(2107, 12, 31, 23, 59, 58)  # what a zip's date fields hold
LOCAL_HEADER = b"PK\x03\x04"
LOCAL_HEADER_TIME = 10  # offset of a local header's time and date fields (two little-endian 16-bit words)
ID_BYTES = 16  # node and file ids are 32 hex digits; root is 16 zero bytes


@dataclass(frozen=True)
class Member:
    """One name in the zip: a folder (``fingerprint`` None, name ending in ``/``) or a file's content,
    with its date in the tree (a stamp, as the database keeps it)."""

    name: str
    modified_at: str
    size: int = 0
    fingerprint: str | None = None


@dataclass
class Archive:
    """A zip ready to stream: its name, the ZipStream that frames its members, and the feeds that hand
    it each file's bytes, in order."""

    name: str
    stream: DatedZipStream
    feeds: list[_Feed]

    @property
    def size(self) -> int:
        return len(self.stream)

    @property
    def files(self) -> int:
        return len(self.feeds)


class _Feed:
    """A member's bytes as zipstream-ng pulls them (it iterates synchronously), put there one piece
    ahead by :meth:`Zips.stream`, which reads the store asynchronously.

    One piece ahead is enough: zipstream-ng yields something (a header, the piece it just took, a
    data descriptor) between any two pulls, and before each step of the archive the stream makes
    sure the member being written has its next piece (or its end) waiting.
    """

    def __init__(self, member: Member):
        self.member = member
        self.pieces: deque[bytes] = deque()
        self.ended = False  # the store has no more bytes for it
        self.done = False  # zipstream-ng has taken its end

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> bytes:
        if self.pieces:
            return self.pieces.popleft()
        if self.ended:
            self.done = True
            raise StopIteration
        raise RuntimeError(f"zip member {self.member.name!r}: bytes asked for before they were read")

    @property
    def waiting(self) -> bool:
        return not self.pieces and not self.ended


class DatedZipStream(ZipStream):
    """zipstream-ng's ZipStream with a date of ours on each member.

    zipstream-ng dates a member given as bytes with the moment it is written, in the gateway's zone,
    and takes no date for it (its issue #27). A zip holds a member's date twice: in the local header
    that goes before its bytes and in its central directory entry at the end. The first is set in the
    header as it goes out (two 16-bit fields overwritten: the length, which the sized stream counted,
    stays), the second on the member's ZipInfo, from which zipstream-ng writes the central directory.
    The pin on zipstream-ng (constraints.txt) and tests/test_zips.py keep both in step with the library.
    """

    def add_dated(self, data: Iterable[bytes] | None, name: str, moment: datetime, size: int = 0) -> None:
        """Queue a member (a folder: ``data`` None and ``name`` ending in ``/``) dated ``moment``."""
        self.add(data, name, size=size)
        self._queue[-1]["date_time"] = dos_date_time(moment)

    def _gen_file_entry(self, *, date_time: tuple[int, ...], **entry: Any) -> Iterator[bytes]:
        pieces = super()._gen_file_entry(**entry)
        header = bytearray(next(pieces))
        if header[:len(LOCAL_HEADER)] != LOCAL_HEADER:
            raise RuntimeError("zipstream-ng did not start a member with its local header")
        dos_date, dos_time = _dos_words(date_time)
        struct.pack_into("<HH", header, LOCAL_HEADER_TIME, dos_time, dos_date)
        yield bytes(header)
        yield from pieces
        self._filelist[-1].date_time = date_time


def dos_date_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    """A UTC moment as a zip's date_time (whole seconds; the format's range, 1980 to 2107, kept)."""
    naive = min(max(moment.replace(tzinfo=None, microsecond=0), DOS_FIRST), DOS_LAST)
    return naive.year, naive.month, naive.day, naive.hour, naive.minute, naive.second


def _dos_words(date_time: tuple[int, ...]) -> tuple[int, int]:
    """(date, time) as a zip header holds them: two seconds a step."""
    year, month, day, hour, minute, second = date_time
    return (year - 1980) << 9 | month << 5 | day, hour << 11 | minute << 5 | second // 2


def safe_segment(name: str) -> str:
    """A name as one path segment inside a zip: the name itself when the tree's rules allow it, else
    with every ``/``, ``\\`` and control character replaced by ``_`` (and ``_`` for an empty name,
    ``.`` or ``..``): never a way out of the folder it is extracted into."""
    if paths.is_valid_name(name):
        return name
    cleaned = "".join("_" if c in "/\\" or unicodedata.category(c) in ("Cc", "Cs") else c for c in name)
    cleaned = cleaned.encode("utf-8", "ignore")[:paths.MAX_NAME_BYTES].decode("utf-8", "ignore")
    return cleaned if cleaned not in ("", ".", "..") else "_"


def unique_names(names: Iterable[tuple[str, bool]]) -> list[str]:
    """Each (name, is_folder) made unique among the others as a desktop compares names (case and
    Unicode form aside): the later of two ``a.txt`` becomes ``a (1).txt``, as an upload would."""
    taken: set[str] = set()
    unique = []
    for name, folder in names:
        free = next(n for n in paths.free_names(safe_segment(name), folder=folder) if paths.name_key(n) not in taken)
        taken.add(paths.name_key(free))
        unique.append(free)
    return unique


@dataclass(eq=False)  # a service: compared by identity, as before
class Zips:
    config: Config
    db: Database
    store: ObjectStore
    namespace: Namespace
    permissions: Permissions
    clock: Clock
    _key: bytes = field(init=False, repr=False)  # signs zip URLs: derived from the JWT secret, for them only

    def __post_init__(self) -> None:
        self._key = hmac.new(self.config.jwt_secret.encode(), KEY_LABEL, hashlib.sha256).digest()

    # --- what a zip holds ---------------------------------------------------------------------------

    async def archive(self, user_id: int, entry_ids: list[str]) -> Archive:
        """The zip of these entries as ``user_id`` may read them now; ZipTooLarge past the limit.

        A folder brings everything live below it, as a folder of the zip named like it (the root as
        ``All files``); a file comes as itself; a name met twice at the top takes ``name (1)``. NodeNotFound / FileNotFound (404) for
        an id that is neither the user's folder nor a file they may read, NotUploaded for an upload
        still in progress.
        """
        picked = [await self._entry(user_id, entry_id) for entry_id in dict.fromkeys(entry_ids)]
        tops = unique_names((entry.name, entry.fingerprint is None) for entry, _ in picked)
        members: list[Member] = []
        for top, (entry, below) in zip(tops, picked, strict=True):
            if entry.fingerprint is None:
                members.append(replace(entry, name=top + "/"))
                members += [replace(m, name=f"{top}/{m.name}") for m in below]
            else:
                members.append(replace(entry, name=top))
        archive = self._frame(f"{tops[0]}.zip" if len(tops) == 1 else f"{SELECTION_NAME}.zip", members)
        limit = self.config.zip_max_size
        if limit and archive.size > limit:
            raise ZipTooLarge(archive.size, limit)
        return archive

    async def _entry(self, user_id: int, entry_id: str) -> tuple[Member, list[Member]]:
        """(the entry as a member of the zip's top level, under its own name, a folder's without its ``/``;
        what a folder holds)."""
        try:
            node = await self.namespace.node(user_id, entry_id, FOLDER)
        except NodeNotFound:
            row, _ = await self.permissions.readable(user_id, entry_id)
            if row["status"] != FileStatus.UPLOADED:
                raise NotUploaded(row["status"]) from None
            return Member(row["file_name"], row["modified_at"], row["file_size"], row["fingerprint"]), []
        below = await self._below(user_id, entry_id)
        if entry_id == ROOT:  # the root has no row: it is as new as the newest thing it holds
            newest = max((m.modified_at for m in below), default=stamp_now(self.clock))
            return Member(ROOT_NAME, newest), below
        return Member(node["name"], node["modified_at"]), below

    async def _below(self, user_id: int, folder_id: str) -> list[Member]:
        """Every live folder and uploaded file below the folder, by path, a folder before what it holds."""
        rows = await nodes_db.live_below(self.db, user_id, folder_id)
        by_id = {row["id"]: row for row in rows}
        path_of: dict[str, str] = {}

        def path(node_id: str) -> str:
            if node_id not in path_of:
                row = by_id[node_id]
                parent = "" if row["parent_id"] == folder_id else path(row["parent_id"]) + "/"
                path_of[node_id] = parent + safe_segment(row["name"])
            return path_of[node_id]

        members = []
        for row in rows:
            if row["kind"] == FOLDER:
                members.append(Member(path(row["id"]) + "/", row["modified_at"]))
            elif row["kind"] == FILE and row["status"] == FileStatus.UPLOADED:
                members.append(Member(path(row["id"]), row["modified_at"], row["file_size"], row["fingerprint"]))
        return sorted(members, key=lambda m: m.name.rstrip("/").split("/"))

    @staticmethod
    def _frame(name: str, members: list[Member]) -> Archive:
        """The members framed by a sized, stored ZipStream: its length is the zip's size, known now."""
        stream = DatedZipStream(sized=True)
        feeds = []
        for member in members:
            feed = None if member.fingerprint is None else _Feed(member)
            if feed is not None:
                feeds.append(feed)
            stream.add_dated(feed, member.name, parse_stamp(member.modified_at), member.size)
        return Archive(name, stream, feeds)

    # --- the bytes ----------------------------------------------------------------------------------

    async def stream(self, archive: Archive) -> AsyncGenerator[bytes, None]:
        """The zip's bytes in order, each member read from the store a piece at a time as the archive
        reaches it. A member whose bytes differ in length from its size ends the stream with an error
        (the client sees a short download, never a zip that lies)."""
        steps = iter(archive.stream)
        feeds = iter(archive.feeds)
        feed = next(feeds, None)
        reader: AsyncGenerator[bytes, None] | None = None
        try:
            while True:
                while feed is not None and feed.done:
                    if reader is not None:
                        await reader.aclose()
                        reader = None
                    feed = next(feeds, None)
                if feed is not None and feed.waiting:
                    if reader is None and feed.member.size:
                        reader = self.store.read(content_key(feed.member.fingerprint or ""), PIECE_SIZE)
                    piece = await anext(reader, None) if reader is not None else None
                    if piece is None:
                        feed.ended = True
                    else:
                        feed.pieces.append(piece)
                try:
                    out = next(steps)
                except StopIteration:
                    return
                yield out
        finally:
            if reader is not None:
                await reader.aclose()

    # --- the URL ------------------------------------------------------------------------------------

    def ticket(self, user_id: int, entry_ids: list[str]) -> tuple[str, int]:
        """(the signed token naming the user, the entries and an expiry, that expiry in unix seconds)."""
        expires_at = int(self.clock().timestamp()) + self.config.download_url_ttl
        ids = b"".join(bytes(ID_BYTES) if entry_id == ROOT else bytes.fromhex(entry_id) for entry_id in entry_ids)
        payload = TICKET_HEAD.pack(TICKET_VERSION, user_id, expires_at) + ids
        return f"{_b64(payload)}.{_b64(self._mac(payload))}", expires_at

    def redeem(self, token: str) -> tuple[int, list[str]]:
        """(user id, entry ids) of a token :meth:`ticket` made; ZipUrlInvalid for anything else,
        ZipUrlExpired once it has expired."""
        try:
            encoded, mac = token.split(".")
            payload, signature = _unb64(encoded), _unb64(mac)
        except ValueError:
            raise ZipUrlInvalid() from None
        if not hmac.compare_digest(signature, self._mac(payload)) or len(payload) < TICKET_HEAD.size:
            raise ZipUrlInvalid()
        version, user_id, expires_at = TICKET_HEAD.unpack_from(payload)
        ids = payload[TICKET_HEAD.size:]
        if version != TICKET_VERSION or not ids or len(ids) % ID_BYTES:
            raise ZipUrlInvalid()
        if self.clock().timestamp() > expires_at:
            raise ZipUrlExpired(expires_at)
        return user_id, [ROOT if chunk == bytes(ID_BYTES) else chunk.hex()
                         for chunk in (ids[i:i + ID_BYTES] for i in range(0, len(ids), ID_BYTES))]

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def is_entry_id(value: object) -> bool:
    """``root``, or an id the gateway makes (32 lowercase hex digits)."""
    return isinstance(value, str) and (value == ROOT or FILE_ID.fullmatch(value) is not None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or not all(c.isalnum() or c in "-_" for c in text) or not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
