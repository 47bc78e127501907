"""What one request, and one account, can make the gateway hold or compute: bounded before the work.

JSON bodies nest at most 32 deep and are refused before parsing otherwise (a 400, never the
RecursionError's 500); an inline upload's whole body is bounded, one `file` part per form,
the user's limits checked before its body is read and its spool held to the smaller of the
limit and the room left; the cap on files per user. (SECURITY.md, "Limits per user" and
"Limits per request".) The gateway runs in-process on the in-memory store
(tests/app_fixtures.py): these are rules of the HTTP interface.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.content import content_key
from gateway.http.parsing import MAX_JSON_DEPTH, nests_deeper_than
from gateway.http.routes import uploads
from tests.lanes import examples
from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - the gateway in-process
from tests.harness import EVENTS_TOKEN, Api, make_claim

KIB = 1024
MIB = 1024 * KIB
CHUNK = 5 * MIB
FILES = "/dropbox/v1/files"
NO_FILE = "0" * 32  # a file id of the core's shape that names no file
BOUNDARY = "limits-test-boundary"


def nested(depth: int) -> str:
    """A JSON object whose arrays and objects nest ``depth`` levels deep (the object itself is one)."""
    return '{"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def depth_of(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


def form(*parts: tuple[str, bytes, str | None], preamble: bytes = b"") -> bytes:
    """A multipart/form-data body of (name, bytes, filename) parts, exactly as written (repeats too)."""
    body = io.BytesIO()
    body.write(preamble)
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body.write(f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        body.write(data + b"\r\n")
    body.write(f"--{BOUNDARY}--\r\n".encode())
    return body.getvalue()


FORM_TYPE = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def chunked(data: bytes, piece: int = 64 * KIB):
    """``data`` as a body of no declared length (chunked transfer encoding)."""
    for start in range(0, len(data), piece):
        yield data[start:start + piece]


async def answer_to_head(url: str, path: str, declared: int, headers: dict[str, str]) -> tuple[int, dict, dict]:
    """Send only the head of a POST declaring a body of ``declared`` bytes, and none of the body:
    (status, headers, JSON body) of the answer, which must come without the body (10 s at most)."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: {where.netloc}", f"Content-Length: {declared}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()

        async def read_answer() -> tuple[int, dict, dict]:
            status = int((await reader.readline()).split()[1])
            answer_headers = {}
            while (line := (await reader.readline()).decode().strip()):
                name, _, value = line.partition(":")
                answer_headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(answer_headers["content-length"]))
            return status, answer_headers, json.loads(body)

        try:
            return await asyncio.wait_for(read_answer(), 10)
        except TimeoutError:
            raise AssertionError(f"POST {path} waited for its body instead of answering") from None
    finally:
        writer.close()


class RecordingSpool(io.BytesIO):
    """The inline upload's spool, remembering the most bytes it ever held."""

    def __init__(self) -> None:
        super().__init__()
        self.most = 0

    def write(self, data) -> int:
        written = super().write(data)
        self.most = max(self.most, self.tell())
        return written


@pytest.fixture
def spools(monkeypatch) -> list[RecordingSpool]:
    """Every spool the inline upload route makes from now on."""
    made: list[RecordingSpool] = []

    def temporary_file() -> RecordingSpool:
        made.append(RecordingSpool())
        return made[-1]

    monkeypatch.setattr(uploads, "tempfile", SimpleNamespace(TemporaryFile=temporary_file))
    return made


# --- JSON bodies: bounded before parsing ---------------------------------------------------------


async def test_json_nested_100000_deep_is_the_contracts_400_on_every_json_endpoint(make_gateway, http):
    # The embedded store's webhook path exists only with its part events.
    gateway = await make_gateway(chunk_size=CHUNK, store_part_events=True)
    api = Api(http, gateway.url)
    user = await api.signup()
    events = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
    endpoints = [  # every endpoint that reads a JSON body, and the code its 400 has
        ("POST", "/dropbox/v1/users", {}, "invalid_json"),
        ("POST", "/dropbox/v1/tokens", {}, "invalid_json"),
        ("PUT", "/dropbox/v1/users/me/password", {}, "invalid_json"),
        ("POST", FILES, {}, "invalid_json"),
        ("POST", f"{FILES}/{NO_FILE}/upload-urls", {}, "invalid_json"),
        ("POST", f"{FILES}/share", {}, "invalid_json"),
        ("POST", f"{FILES}/{NO_FILE}/links", {}, "invalid_json"),
        ("POST", "/dropbox/v1/links/no-such-token/download", {}, "invalid_json"),
        ("POST", "/dropbox/v1/events", events, "invalid_event"),
        ("POST", "/dropbox/v1/events/seaweedfs", events, "invalid_event"),
    ]
    # The review's body (invalid JSON: the parser recursed before it found out), and a valid one.
    bodies = [b"[" * 100_000, ('{"a":' * 50_000 + "1" + "}" * 50_000).encode()]
    for method, path, headers, code in endpoints:
        for body in bodies:
            answer = await user.request(method, path, data=body,
                                        headers={"Content-Type": "application/json", **headers})
            assert answer.status == 400, (method, path, answer.status, answer.body)
            assert answer.body["error"]["code"] == code and f"deeper than {MAX_JSON_DEPTH}" in answer.body["error"]["message"]
    # The inline upload's `file_metadata` part is JSON too (of at most 64 KiB).
    metadata = ("file_metadata", b"[" * 60_000, None)
    answer = await user.post(FILES, data=form(metadata, ("file", b"x", "x.txt")), headers=FORM_TYPE)
    assert answer.status == 400 and answer.body["error"]["code"] == "invalid_json", answer.body
    assert (await user.get(FILES)).body["files"] == []


async def test_nesting_up_to_the_bound_parses_and_brackets_in_strings_do_not_count(make_gateway, http):
    gateway = await make_gateway()
    api = Api(http, gateway.url)

    def sign_up(name: str, depth: int) -> dict:
        # An extra field the gateway ignores, nesting the body `depth` deep; a password of brackets.
        return {"username": name, "email": f"{name}@example.com", "password": '[{"\\' * 20,
                "extra": json.loads(nested(depth - 1))}

    deepest = await api.post("/dropbox/v1/users", json=sign_up("deepest", MAX_JSON_DEPTH))
    assert deepest.status == 201, deepest.body
    login = await api.post("/dropbox/v1/tokens", json={"username": "deepest", "password": '[{"\\' * 20})
    assert login.status == 200, login.body
    deeper = await api.post("/dropbox/v1/users", json=sign_up("deeper", MAX_JSON_DEPTH + 1))
    assert deeper.status == 400 and deeper.body["error"]["code"] == "invalid_json", deeper.body


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=40,
)


@given(JSON_VALUES, st.booleans())
@settings(max_examples=examples(300), deadline=None)
def test_the_depth_scan_agrees_with_the_parser_on_every_json_text(value, ascii_only):
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    depth = depth_of(value)
    for limit in range(depth + 2):
        assert nests_deeper_than(raw, limit) == (depth > limit), (raw, limit)


@given(st.text(alphabet='[]{}"\\,:1 ', max_size=300))
@settings(max_examples=examples(500), deadline=None)
def test_whatever_the_scan_lets_through_the_parser_reads_no_deeper(text):
    """On any text (mostly invalid JSON: unterminated strings, stray escapes), what passes the scan
    at a limit parses, if it parses at all, no deeper than that limit."""
    raw = text.encode()
    try:
        value = json.loads(raw)
    except ValueError:
        return
    for limit in range(4):
        if not nests_deeper_than(raw, limit):
            assert depth_of(value) <= limit, (text, limit)


async def test_a_json_body_must_be_utf8(make_gateway, http):
    gateway = await make_gateway()
    api = Api(http, gateway.url)
    body = json.dumps({"username": "wide", "email": "wide@example.com", "password": "long enough"})
    for encoding in ("utf-16", "utf-32"):  # Python's parser would guess these from the bytes
        answer = await api.post("/dropbox/v1/users", data=body.encode(encoding), headers={"Content-Type": "application/json"})
        assert answer.status == 400 and answer.body["error"]["code"] == "invalid_json", answer.body
        assert "UTF-8" in answer.body["error"]["message"]


async def test_a_json_body_declared_over_1_mib_is_refused_before_a_byte_of_it_is_read(make_gateway, http):
    gateway = await make_gateway()
    user = await Api(http, gateway.url).signup()
    json_type = {"Content-Type": "application/json"}
    for path, headers in (
        ("/dropbox/v1/users", json_type),
        (f"{FILES}/{NO_FILE}/upload-urls", {**json_type, "Authorization": f"Bearer {user.token}"}),
        ("/dropbox/v1/events", {**json_type, "Authorization": f"Bearer {EVENTS_TOKEN}"}),
    ):
        status, _, body = await answer_to_head(gateway.url, path, 2 * MIB, headers)
        assert (status, body["error"]["code"]) == (413, "payload_too_large"), (path, body)


# --- inline uploads: the whole body, one file part, the user's limits first -----------------------


async def test_a_second_file_part_is_refused_never_appended_to_the_first(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, inline_upload_limit=MIB)
    user = await Api(http, gateway.url).signup()
    metadata = ("file_metadata", b'{"file_name": "parts.bin"}', None)
    # The review's four parts, each under the limit, once taken for one file four times as large.
    four = form(metadata, *[("file", os.urandom(400 * KIB), None)] * 4)
    for body in (four, chunked(four)):  # declared (refused before reading), then not declared
        answer = await user.post(FILES, data=body, headers=FORM_TYPE)
        assert answer.status in (400, 413), answer.body
        assert answer.body["error"]["code"] in ("invalid_multipart", "inline_upload_too_large")
    assert (await user.post(FILES, data=four, headers=FORM_TYPE)).body["error"]["code"] == "inline_upload_too_large"
    # Two small ones, the whole form well under the limit.
    two = form(metadata, ("file", b"first", None), ("file", b"second", None))
    answer = await user.post(FILES, data=two, headers=FORM_TYPE)
    assert answer.status == 400 and answer.body["error"]["code"] == "invalid_multipart", answer.body
    assert "second 'file' part" in answer.body["error"]["message"]
    again = form(metadata, metadata, ("file", b"x", None))
    answer = await user.post(FILES, data=again, headers=FORM_TYPE)
    assert answer.status == 400 and "second 'file_metadata' part" in answer.body["error"]["message"]
    assert (await user.get(FILES)).body["files"] == []


async def test_the_whole_body_is_bounded_whatever_it_declares(make_gateway, http, spools):
    gateway = await make_gateway(chunk_size=CHUNK, inline_upload_limit=MIB)
    user = await Api(http, gateway.url).signup()
    # A file of exactly the limit, in a form as curl sends it: taken.
    exact = form(("file_metadata", b'{"file_name": "exact.bin"}', None), ("file", os.urandom(MIB), "exact.bin"))
    answer = await user.post(FILES, data=chunked(exact), headers=FORM_TYPE)
    assert answer.status == 201 and answer.body["file_size"] == MIB, answer.body
    # Two more MiB before the first boundary (a preamble the parser skips, line by line): no form of
    # the limit is that large.
    padded = form(("file", b"small", "small.bin"), preamble=(b"x" * 1022 + b"\r\n") * 2 * KIB)
    for body in (padded, chunked(padded)):
        answer = await user.post(FILES, data=body, headers=FORM_TYPE)
        assert answer.status == 413 and answer.body["error"]["code"] == "inline_upload_too_large", answer.body
    # A file over the limit, declared or not: the spool never holds more than the limit.
    over = form(("file", os.urandom(2 * MIB), "over.bin"))
    answer = await user.post(FILES, data=chunked(over), headers=FORM_TYPE)
    assert answer.status == 413 and answer.body["error"]["code"] == "inline_upload_too_large"
    assert max(spool.most for spool in spools) <= MIB
    assert [f["file_name"] for f in (await user.get(FILES)).body["files"]] == ["exact.bin"]


async def test_the_users_limits_are_checked_before_an_inline_body_is_read(make_gateway, http, spools):
    gateway = await make_gateway(chunk_size=CHUNK, inline_upload_limit=4 * MIB, user_quota_bytes=MIB,
                                 max_uploads_in_progress=1, max_files_per_user=2)
    api = Api(http, gateway.url)
    quota_user, slots_user, files_user = await api.signup(), await api.signup(), await api.signup()
    assert (await slots_user.post(FILES, json=make_claim(os.urandom(100), CHUNK))).body["status"] == "uploading"
    for name in ("a.txt", "b.txt"):
        assert (await files_user.post(FILES, json=make_claim(b"", CHUNK, file_name=name))).status == 201

    def head(user: Api) -> dict[str, str]:
        return {**FORM_TYPE, "Authorization": f"Bearer {user.token}"}

    # Declared larger than a form of the limit can be.
    status, _, body = await answer_to_head(gateway.url, FILES, 4 * MIB + 128 * KIB + 1, head(quota_user))
    assert (status, body["error"]["code"]) == (413, "inline_upload_too_large")
    # Holding at least 2 MiB of file (all but 128 KiB of the body) for a quota of 1 MiB.
    status, _, body = await answer_to_head(gateway.url, FILES, 2 * MIB + 128 * KIB, head(quota_user))
    assert (status, body["error"]["code"]) == (403, "quota_exceeded")
    assert (body["error"]["quota_bytes"], body["error"]["used_bytes"]) == (MIB, 0)
    # A file that is surely not empty needs an upload slot, and this user has none left.
    status, headers, body = await answer_to_head(gateway.url, FILES, 300 * KIB, head(slots_user))
    assert (status, body["error"]["code"]) == (429, "too_many_uploads") and int(headers["retry-after"]) > 0
    # Any file at all is one too many for this user.
    status, _, body = await answer_to_head(gateway.url, FILES, 200 * KIB, head(files_user))
    assert (status, body["error"]["code"]) == (403, "quota_exceeded") and body["error"]["max_files_per_user"] == 2
    assert spools == []  # not a byte was spooled


async def test_a_small_inline_body_is_read_first_and_refused_before_its_bytes_are_stored(make_gateway, http, spools):
    """A body declared at most FORM_ALLOWANCE (nothing it must hold at the least) has its limits checked in the
    read that looks for the file, once it is read: refused all the same, and never stored."""
    gateway = await make_gateway(chunk_size=CHUNK, inline_upload_limit=4 * MIB, user_quota_bytes=MIB,
                                 max_files_per_user=2)
    api = Api(http, gateway.url)
    quota_user, files_user = await api.signup(), await api.signup()
    for name in ("a.txt", "b.txt"):
        assert (await files_user.post(FILES, json=make_claim(b"", CHUNK, file_name=name))).status == 201
    almost = make_claim(os.urandom(MIB - 10 * KIB), CHUNK, file_name="a.bin")
    assert (await quota_user.post(FILES, json=almost)).status == 201  # counts from its start
    quota_user_files = (await quota_user.get(FILES)).body["files"]
    for user, size, limit in ((files_user, 100, "max_files_per_user"), (quota_user, 20 * KIB, "quota_bytes")):
        data = os.urandom(size)
        body = form(("file_metadata", b'{"file_name": "small.bin"}', None), ("file", data, None))
        assert len(body) <= uploads.FORM_ALLOWANCE  # declared small
        spooled = len(spools)
        answer = await user.post(FILES, data=body, headers=FORM_TYPE)
        assert answer.status == 403 and answer.body["error"]["code"] == "quota_exceeded", answer.body
        assert limit in answer.body["error"]
        assert len(spools) == spooled + 1  # read first
        assert await gateway.store.stat(content_key(make_claim(data, CHUNK)["fingerprint"])) is None
    assert (await quota_user.get(FILES)).body["files"] == quota_user_files


async def test_the_quota_is_checked_as_an_inline_body_arrives_and_the_spool_holds_no_more(make_gateway, http, spools):
    gateway = await make_gateway(chunk_size=CHUNK, inline_upload_limit=4 * MIB, user_quota_bytes=MIB)
    user = await Api(http, gateway.url).signup()
    assert (await user.post(FILES, json=make_claim(os.urandom(KIB), CHUNK))).status == 201  # 1 KiB of the quota used
    # No length declared: the quota cannot be checked before; it is while the bytes arrive.
    too_big = form(("file", os.urandom(3 * MIB), "big.bin"))
    answer = await user.post(FILES, data=chunked(too_big), headers=FORM_TYPE)
    assert answer.status == 403 and answer.body["error"]["code"] == "quota_exceeded", answer.body
    assert answer.body["error"]["used_bytes"] == KIB
    assert spools and max(spool.most for spool in spools) <= MIB - KIB
    # What exactly fills the quota is taken, declared or not.
    fits = form(("file_metadata", b'{"file_name": "fits.bin"}', None), ("file", os.urandom(MIB - KIB), None))
    answer = await user.post(FILES, data=fits, headers=FORM_TYPE)
    assert answer.status == 201 and answer.body["status"] == "uploaded", answer.body


# --- the cap on files per user -----------------------------------------------------------------------


async def test_the_cap_on_files_counts_every_file_and_answers_like_the_quota(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, max_files_per_user=3)
    api = Api(http, gateway.url)
    user, other = await api.signup(), await api.signup()
    empty = [await user.post(FILES, json=make_claim(b"", CHUNK, file_name=f"empty-{n}.txt")) for n in range(2)]
    assert [answer.status for answer in empty] == [201, 201]
    data = os.urandom(100)
    underway = await user.post(FILES, json=make_claim(data, CHUNK, file_name="underway.bin"))
    assert underway.body["status"] == "uploading"

    # A fourth file of any kind: empty (no quota), a copy of own content, an inline upload.
    form_data = aiohttp.FormData()
    form_data.add_field("file", b"inline", filename="inline.txt")
    for answer in (
        await user.post(FILES, json=make_claim(b"", CHUNK, file_name="one-more.txt")),
        await user.post(FILES, json=make_claim(os.urandom(100), CHUNK)),
        await user.post(FILES, data=form_data),
    ):
        assert answer.status == 403, answer.body
        error = answer.body["error"]
        assert error["code"] == "quota_exceeded" and (error["max_files_per_user"], error["files"]) == (3, 3)
        assert "Retry-After" not in answer.headers  # waiting does not help; deleting does
    # Resuming the upload it has is no new file.
    resumed = await user.post(FILES, json=make_claim(data, CHUNK, file_name="underway.bin"))
    assert resumed.status == 200 and resumed.body["file_id"] == underway.body["file_id"]
    # A failed upload is still a file (a row, listed, deletable); deleting one makes room.
    await gateway.core.uploads.abandon(underway.body["file_id"])
    assert (await user.post(FILES, json=make_claim(b"", CHUNK, file_name="one-more.txt"))).status == 403
    assert (await user.delete(f"{FILES}/{underway.body['file_id']}")).status == 204
    assert (await user.post(FILES, json=make_claim(b"", CHUNK, file_name="one-more.txt"))).status == 201
    # Per user: another user's files are theirs.
    assert (await other.post(FILES, json=make_claim(b"", CHUNK))).status == 201


async def test_no_cap_on_files_when_it_is_zero(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, max_files_per_user=0)
    user = await Api(http, gateway.url).signup()
    for n in range(3):
        assert (await user.post(FILES, json=make_claim(b"", CHUNK, file_name=f"{n}.txt"))).status == 201


@pytest.mark.every_engine  # concurrent transactions
async def test_concurrent_new_files_never_pass_the_cap(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, max_files_per_user=3)
    user = await Api(http, gateway.url).signup()
    answers = await asyncio.gather(
        *(user.post(FILES, json=make_claim(b"", CHUNK, file_name=f"{n}.txt")) for n in range(10))
    )
    assert sorted(answer.status for answer in answers) == [201] * 3 + [403] * 7, [a.body for a in answers]
    assert len((await user.get(FILES)).body["files"]) == 3
