"""An asyncio client for the gateway's JSON API (the v1 contract).

Every failure comes out as a :class:`client.errors.ClientError` whose message
says what went wrong and what to do about it.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import time
from email.utils import parsedate_to_datetime
from typing import Any
from collections.abc import AsyncIterator, Iterable
from urllib.parse import quote

import aiohttp

from client.errors import (
    AuthRequired,
    BadLogin,
    ClientError,
    NotFound,
    Refused,
    ServerError,
    Throttled,
    Unreachable,
)

API = "/dropbox/v1"
USER_AGENT = "dbx-client/0.1"
FILES_HINT = "`dbx ls` lists your files and those shared with you"
LINKS_HINT = "`dbx links FILE_ID` lists the links of a file you own"
TREE_HINT = "`dbx ls /` lists your folders and files"
TRASH_HINT = "`dbx trash` lists what is in the trash"


def connection_reason(exc: BaseException) -> str:
    """A short human reason for a failed connection."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        inner = exc.os_error
        if inner.strerror:
            return inner.strerror
        if inner.errno:
            return os.strerror(inner.errno)
        return str(inner) or exc.__class__.__name__
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return str(exc) or exc.__class__.__name__


TRANSPORT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


def retry_after_seconds(value: str | None, now: float | None = None) -> int | None:
    """A ``Retry-After`` header as whole seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0, math.ceil(when.timestamp() - (time.time() if now is None else now)))


def wait_words(seconds: int | None) -> str:
    """'in 42 seconds', 'in 3 minutes', or 'later' when the gateway did not say."""
    if seconds is None:
        return "later"
    if seconds < 120:
        return f"in {seconds} second{'s' if seconds != 1 else ''}"
    return f"in {math.ceil(seconds / 60)} minutes"


def make_session(**kwargs: Any) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    connector = aiohttp.TCPConnector(limit=64)
    return aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers={"User-Agent": USER_AGENT}, **kwargs
    )


class GatewayClient:
    """One gateway, one (optional) access token, one aiohttp session."""

    def __init__(self, server: str, token: str | None = None, *, session: aiohttp.ClientSession | None = None):
        self.server = server.rstrip("/")
        self.token = token
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> GatewayClient:
        if self._session is None:
            self._session = make_session()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = make_session()
        return self._session

    # -- plumbing -------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        params: dict | None = None,
        auth: bool = True,
        ok: Iterable[int] = (200,),
        what: str | None = None,
        hint: str = FILES_HINT,
    ) -> tuple[int, Any]:
        """Send one request; answer (status, parsed JSON body) for the ``ok`` statuses.

        The body is ``json_body`` as JSON, or ``data`` as aiohttp sends it (a form, for inline uploads).

        ``what`` names the thing asked for in not-found messages ("file 42"),
        ``hint`` says there where to look for the right one.
        """
        headers = {"Accept": "application/json"}
        if auth:
            if not self.token:
                raise AuthRequired(f"you are not logged in to {self.server}; run `dbx login`")
            headers["Authorization"] = f"Bearer {self.token}"
        url = self.server + path
        try:
            async with self.session.request(
                method, url, json=json_body, data=data, params=params, headers=headers, allow_redirects=False
            ) as resp:
                raw = await resp.read()
                status = resp.status
                request_id = resp.headers.get("X-Request-Id")
                retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        except TRANSPORT_ERRORS as exc:
            raise Unreachable(
                f"cannot reach the gateway at {self.server} ({connection_reason(exc)}); "
                "is it running? Point dbx at another one with --server or DBX_SERVER"
            ) from exc
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        if status in tuple(ok):
            if body is None and raw:
                raise ServerError(f"the gateway answered {method} {path} with something that is not JSON")
            return status, body
        raise self._error(method, path, status, body, request_id, what, hint=hint, retry_after=retry_after)

    def _error(self, method: str, path: str, status: int, body: Any, request_id: str | None, what: str | None,
               *, hint: str = FILES_HINT, retry_after: int | None = None) -> ClientError:
        """The one mapping from the gateway's error answers to the client's errors and exit codes."""
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code") or "")
        message = str(error.get("message") or "").rstrip(".")
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        if status == 429:
            return self._throttled(code, message, retry_after)
        if status == 401:
            if code == "invalid_credentials":
                return BadLogin(
                    f"wrong username or password for {self.server}; check them and run `dbx login` again",
                    code=code, status=status,
                )
            if code == "token_expired":
                return AuthRequired(
                    f"your session on {self.server} has expired; run `dbx login`", code=code, status=status
                )
            if code == "token_revoked":
                return AuthRequired(
                    f"your session on {self.server} ended (logged out, or the password changed); "
                    "log in again: `dbx login`", code=code, status=status,
                )
            reason = f" ({message})" if message else ""
            return AuthRequired(
                f"the gateway at {self.server} did not accept your login{reason}; run `dbx login`",
                code=code or "unauthorized", status=status,
            )
        if status == 404:
            if code in ("unknown_endpoint", ""):
                return ServerError(
                    f"the gateway at {self.server} does not offer {method} {path} yet (404); "
                    "it may be an older version",
                    code="unsupported", status=status,
                )
            subject = what or "it"
            reason = f": {message}" if message else ""
            return NotFound(
                f"{subject} was not found on {self.server}{reason}; {hint}",
                code=code or "not_found", status=status, **details,
            )
        if status == 403 and code == "quota_exceeded":
            return Refused(
                f"your storage quota on {self.server} is full{': ' + message if message else ''}; "
                "`dbx whoami` shows how much you use, `dbx rm` frees space",
                code=code, status=status, **details,
            )
        if status == 403:
            return AuthRequired(
                f"the gateway refused {method} {path}: {message or 'forbidden'}", code=code or "forbidden", status=status
            )
        if status in (405, 501):
            return ServerError(
                f"the gateway at {self.server} does not offer {method} {path} ({status}); it may be an older version",
                code="unsupported", status=status,
            )
        if 400 <= status < 500:
            return Refused(
                f"the gateway refused the request: {message or f'HTTP {status}'}",
                code=code or "refused", status=status, **details,
            )
        rid = f" (request id {request_id})" if request_id else ""
        return ServerError(
            f"the gateway failed on {method} {path} with HTTP {status}: {message or 'no details'}{rid}; "
            "try again later, and tell its operator if it persists",
            code=code or "server_error", status=status,
        )

    def _throttled(self, code: str, message: str, retry_after: int | None) -> Throttled:
        when = wait_words(retry_after)
        if code == "too_many_attempts":
            text = (f"too many failed logins on {self.server} for this username or from this address; "
                    f"wait and try again {when}")
        elif code == "too_many_uploads":
            text = (f"you have as many uploads in progress on {self.server} as it allows; finish them "
                    f"(run `dbx upload` on those files again) or remove them (`dbx ls` shows them as uploading, "
                    f"`dbx rm` removes one), or try again {when}")
        else:
            text = f"the gateway at {self.server} is busy{': ' + message if message else ''}; try again {when}"
        return Throttled(text, code=code or "throttled", status=429, retry_after=retry_after)

    # -- the contract ---------------------------------------------------------------

    async def config(self) -> dict:
        return (await self.request("GET", f"{API}/config", auth=False))[1]

    async def create_user(self, username: str, email: str, password: str) -> dict:
        try:
            return (await self.request(
                "POST", f"{API}/users", json_body={"username": username, "email": email, "password": password},
                auth=False, ok=(201,),
            ))[1]
        except Refused as exc:
            if exc.status == 409:
                raise Refused(f"the username {username!r} is taken on {self.server}; pick another, or `dbx login`",
                              code=exc.code, status=409) from None
            raise

    async def create_token(self, username: str, password: str) -> dict:
        return (await self.request(
            "POST", f"{API}/tokens", json_body={"username": username, "password": password}, auth=False
        ))[1]

    async def me(self) -> dict:
        return (await self.request("GET", f"{API}/users/me"))[1]

    async def revoke_token(self) -> None:
        """End the session of this client's token (contract v1.1)."""
        await self.request("DELETE", f"{API}/tokens/current", ok=(204, 200))

    async def change_password(self, current: str, new: str) -> None:
        """Contract v1.1: 204, and every token issued before stops working; 403 wrong current password."""
        try:
            await self.request("PUT", f"{API}/users/me/password",
                               json_body={"current_password": current, "new_password": new}, ok=(204, 200))
        except AuthRequired as exc:
            if exc.status == 403:
                raise BadLogin("the current password is wrong; nothing was changed", code=exc.code,
                               status=403) from None
            raise

    async def create_link(self, file_id: Any, expires_in: int | None = None, password: str | None = None) -> dict:
        body: dict[str, Any] = {}
        if expires_in is not None:
            body["expires_in"] = expires_in
        if password is not None:
            body["password"] = password
        try:
            return (await self.request("POST", f"{API}/files/{_seg(file_id)}/links", json_body=body, ok=(201, 200),
                                       what=f"file {file_id} (among the files you own)"))[1]
        except Refused as exc:
            if exc.status == 409:
                raise Refused(f"file {file_id} is not uploaded (yet); a link can be made once it is "
                              f"(`dbx info {file_id}` shows its status)", code=exc.code, status=409) from None
            raise

    async def list_links(self, file_id: Any) -> list[dict]:
        answer = (await self.request("GET", f"{API}/files/{_seg(file_id)}/links",
                                     what=f"file {file_id} (among the files you own)"))[1]
        return list(answer.get("links", []))

    async def delete_link(self, link_id: Any) -> None:
        await self.request("DELETE", f"{API}/links/{_seg(link_id)}", ok=(204, 200),
                           what=f"link {link_id} (of a file you own)", hint=LINKS_HINT)

    async def create_upload(self, metadata: dict) -> tuple[int, dict]:
        """POST /files: (201, new upload) or (200, an upload being resumed / already done)."""
        return await self.request("POST", f"{API}/files", json_body=metadata, ok=(200, 201))

    async def upload_urls(self, file_id: Any, indexes: list[int] | None = None) -> list[dict]:
        body = {"chunks": indexes} if indexes is not None else None
        _, answer = await self.request(
            "POST", f"{API}/files/{_seg(file_id)}/upload-urls", json_body=body, what=f"upload {file_id}"
        )
        return list(answer.get("urls", []))

    async def complete(self, file_id: Any) -> tuple[int, dict]:
        """(200, file object) or (409, error body naming the missing chunks)."""
        return await self.request(
            "POST", f"{API}/files/{_seg(file_id)}/complete", ok=(200, 409), what=f"upload {file_id}"
        )

    async def get_file(self, file_id: Any) -> dict:
        return (await self.request("GET", f"{API}/files/{_seg(file_id)}", what=f"file {file_id}"))[1]

    async def list_files(self, fingerprint: str | None = None) -> list[dict]:
        params = {"fingerprint": fingerprint} if fingerprint else None
        return list((await self.request("GET", f"{API}/files", params=params))[1].get("files", []))

    async def list_shared(self) -> list[dict]:
        return list((await self.request("GET", f"{API}/files/shared"))[1].get("files", []))

    async def delete_file(self, file_id: Any) -> None:
        await self.request("DELETE", f"{API}/files/{_seg(file_id)}", ok=(204, 200), what=f"file {file_id}")

    async def share(self, file_id: Any, users: list[str]) -> dict:
        return (await self.request(
            "POST", f"{API}/files/share", json_body={"file_id": str(file_id), "users": users},
            what=f"file {file_id} or one of the users ({', '.join(users)})",
        ))[1]

    async def unshare(self, file_id: Any, username: str) -> None:
        await self.request(
            "DELETE", f"{API}/files/{_seg(file_id)}/shares/{quote(username, safe='')}", ok=(204, 200),
            what=f"file {file_id} or its share with {username}",
        )


    # -- the tree (contract v1.2) -------------------------------------------------------

    async def metadata(self, path: str) -> dict:
        """The folder or file at ``path`` (``/`` is the root)."""
        return (await self.request("GET", f"{API}/metadata", params={"path": path}, what=path, hint=TREE_HINT))[1]

    async def get_folder(self, folder_id: Any) -> dict:
        return (await self.request("GET", f"{API}/folders/{_seg(folder_id)}", what=f"folder {folder_id}",
                                   hint=TREE_HINT))[1]

    async def create_folder(self, *, path: str | None = None, parent_id: Any = None, name: str | None = None,
                            autorename: bool = False) -> tuple[int, dict]:
        """(201, a new folder) or (200, the folder already at ``path``); 409 ``name_taken`` comes out as Refused."""
        body: dict[str, Any] = {"path": path} if path is not None else {"parent_id": str(parent_id), "name": name}
        if autorename:
            body["autorename"] = True
        return await self.request("POST", f"{API}/folders", json_body=body, ok=(200, 201),
                                  what=path or f"folder {parent_id}", hint=TREE_HINT)

    def folder_entries(self, folder_id: Any, limit: int = 1000) -> AsyncIterator[list[dict]]:
        """The folder's entries (folders first, then files), a page at a time, to the last."""
        return self._pages(f"{API}/folders/{_seg(folder_id)}/entries", limit, what=f"folder {folder_id}",
                           hint=TREE_HINT)

    async def _pages(self, path: str, limit: int, **kwargs: Any) -> AsyncIterator[list[dict]]:
        """The ``entries`` of a keyset-paged listing, a page at a time, following ``cursor`` until it is null."""
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            page = (await self.request("GET", path, params=params, **kwargs))[1]
            yield list(page.get("entries") or [])
            cursor = page.get("cursor")
            if not cursor:
                return

    async def move(self, entry: dict, *, parent_id: Any = None, name: str | None = None,
                   autorename: bool = False) -> dict:
        """Rename and/or move a file or folder (PATCH): the entry at its new place, with the same id."""
        body = placement(parent_id, name, autorename)
        kind, node_id = entry_kind(entry), entry_id(entry)
        return (await self.request("PATCH", f"{API}/{kind}s/{_seg(node_id)}", json_body=body,
                                   what=f"{kind} {node_id}", hint=TREE_HINT))[1]

    async def copy(self, file_id: Any, *, parent_id: Any = None, name: str | None = None,
                   autorename: bool = False) -> dict:
        """A new file with the same content (no bytes move)."""
        body = placement(parent_id, name, autorename)
        return (await self.request("POST", f"{API}/files/{_seg(file_id)}/copy", json_body=body, ok=(201, 200),
                                   what=f"file {file_id}", hint=TREE_HINT))[1]

    async def delete_folder(self, folder_id: Any) -> None:
        """The folder and all it holds go to the trash."""
        await self.request("DELETE", f"{API}/folders/{_seg(folder_id)}", ok=(204, 200), what=f"folder {folder_id}",
                           hint=TREE_HINT)

    async def versions(self, file_id: Any) -> list[dict]:
        answer = (await self.request("GET", f"{API}/files/{_seg(file_id)}/versions", what=f"file {file_id}",
                                     hint=TREE_HINT))[1]
        return list(answer.get("versions") or [])

    async def restore_version(self, file_id: Any) -> dict:
        return (await self.request("POST", f"{API}/files/{_seg(file_id)}/restore", what=f"version {file_id}",
                                   hint="`dbx versions FILE` lists a file's versions"))[1]

    def trash(self, limit: int = 1000) -> AsyncIterator[list[dict]]:
        """What is in the trash, newest first, a page at a time."""
        return self._pages(f"{API}/trash", limit)

    async def restore_from_trash(self, node_id: Any) -> dict:
        return (await self.request("POST", f"{API}/trash/{_seg(node_id)}/restore", what=f"{node_id} in the trash",
                                   hint=TRASH_HINT))[1]

    async def delete_from_trash(self, node_id: Any) -> None:
        await self.request("DELETE", f"{API}/trash/{_seg(node_id)}", ok=(204, 200), what=f"{node_id} in the trash",
                           hint=TRASH_HINT)

    async def search(self, query: str, limit: int = 100) -> list[dict]:
        answer = (await self.request("GET", f"{API}/search", params={"q": query, "limit": limit}))[1]
        return list(answer.get("entries") or [])

    async def upload_inline(self, metadata: dict, content: bytes) -> dict:
        """A small file in one ``multipart/form-data`` request: the gateway streams it into the store (201)."""
        return (await self.request("POST", f"{API}/files", data=inline_form([(metadata, content)]), ok=(201, 200),
                                   what=metadata.get("path") or metadata.get("parent_id"), hint=TREE_HINT))[1]

    async def upload_batch(self, files: list[tuple[dict, bytes]]) -> list[dict | ClientError]:
        """Small files in one request (``POST /dropbox/v1/files/batch``, beyond the contract; at most
        protocol/batches.py's bounds): for each file, in order, its file object, or the error it got, as
        :meth:`request` raises it for a file sent alone. The gateway checks and answers each as if alone.
        A gateway without the call: ServerError ``unsupported``."""
        path = f"{API}/files/batch"
        try:
            entries = (await self.request("POST", path, data=inline_form(files), hint=TREE_HINT))[1].get("entries")
        except NotFound as exc:  # the batch itself: an older gateway takes it for a file id (files' refusals are entries)
            raise ServerError(f"the gateway at {self.server} does not offer POST {path}; it may be an older version",
                              code="unsupported", status=404) from exc
        if not isinstance(entries, list) or len(entries) != len(files) or not all(isinstance(e, dict) for e in entries):
            raise ServerError(f"the gateway answered a batch of {len(files)} files with something else; "
                              "tell its operator")
        return [entry["file"] if isinstance(entry.get("file"), dict) else
                self._error("POST", path, entry["status"] if isinstance(entry.get("status"), int) else 500, entry, None,
                            metadata.get("path") or metadata.get("parent_id"), hint=TREE_HINT)
                for (metadata, _), entry in zip(files, entries, strict=True)]


def inline_form(files: list[tuple[dict, bytes]]) -> aiohttp.FormData:
    """The ``multipart/form-data`` body of inline uploads: for each file a ``file_metadata`` part, then its ``file``."""
    form = aiohttp.FormData()
    for metadata, content in files:
        form.add_field("file_metadata", json.dumps(metadata), content_type="application/json")
        form.add_field("file", content, filename="file", content_type="application/octet-stream")
    return form


def placement(parent_id: Any, name: str | None, autorename: bool) -> dict:
    """The body of a move or copy: the new folder and/or name, and whether a taken name may become a free one."""
    body: dict[str, Any] = {}
    if parent_id is not None:
        body["parent_id"] = str(parent_id)
    if name is not None:
        body["name"] = name
    if autorename:
        body["autorename"] = True
    return body


def entry_kind(entry: dict) -> str:
    """``file`` or ``folder``: what a tree entry is (v1 file objects carry no ``type``: files)."""
    return "folder" if entry.get("type") == "folder" else "file"


def entry_id(entry: dict) -> str:
    """A tree entry's id: ``folder_id`` of a folder, ``file_id`` of a file."""
    return str(entry.get("folder_id") if entry_kind(entry) == "folder" else entry.get("file_id"))


def _seg(value: Any) -> str:
    return quote(str(value), safe="")


def missing_chunks(error_body: Any) -> list[int] | None:
    """The missing indexes of a 409 from /complete, wherever the gateway put them."""
    if not isinstance(error_body, dict):
        return None
    error = error_body.get("error", error_body)
    if not isinstance(error, dict):
        return None
    for key in ("missing", "missing_chunks", "missing_indexes", "chunks"):
        value = error.get(key)
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            return list(value)
    return None
