"""Naming files and folders of the user's tree on the command line: by path or by id.

An argument that starts with ``/`` is a path in the caller's own tree
(``/docs/report.pdf``; ``/`` is the root), looked up with
``GET /dropbox/v1/metadata?path=``. Anything else is an id, as the v1 commands
always took (``root`` is the root folder): a file's id or a folder's, tried in
that order. A trailing ``/`` is dropped (``/docs/`` is ``/docs``); every other
name along a path is checked with the contract's rules (protocol/paths.py)
before the gateway is asked, so a path it would refuse is a usage error
(exit 2) that says why.
"""
from __future__ import annotations

from client.api import GatewayClient, entry_id, entry_kind
from client.errors import NotFound, ServerError, UsageError
from client.output import printable
from protocol.paths import ROOT_PATH, InvalidName, join_path, parent_path, split_path

ROOT_ID = "root"


def is_path(text: str) -> bool:
    return text.startswith("/")


def remote_path(text: str) -> str:
    """``text`` as a path the contract takes: one trailing ``/`` at most dropped, every name checked."""
    path = text.rstrip("/") or ROOT_PATH
    try:
        split_path(path)
    except InvalidName as exc:
        raise UsageError(f"{printable(text)!s} is not a path dbx can use: {exc}") from None
    return path


def base_name(path: str) -> str:
    """The last name of a path (the root has none: '')."""
    return path.rsplit("/", 1)[1] if path != ROOT_PATH else ""


def not_found(text: str, server: str) -> NotFound:
    """Nothing at a path, or with an id: said so, with a guess when an id looks like a name without its '/'."""
    if is_path(text):
        what = f"{text} was not found on {server}: no file or folder is at that path"
    else:
        hint = "" if "/" in text else f" (a path starts with '/': did you mean /{text}?)"
        what = f"{text} was not found on {server}: no file or folder you can see has that id{hint}"
    return NotFound(printable(f"{what}; `dbx ls /` lists your tree"))


async def resolve(client: GatewayClient, text: str) -> dict:
    """The file or folder ``text`` names (a path, or an id); :class:`NotFound` (exit 6) when none is there."""
    if is_path(text):
        try:
            return await client.metadata(remote_path(text))
        except NotFound:
            raise not_found(text, client.server) from None
    if text == ROOT_ID:
        return await client.get_folder(ROOT_ID)
    for lookup in (client.get_file, client.get_folder):
        try:
            return await lookup(text)
        except NotFound:
            continue
        except ServerError as exc:
            if exc.status != 404:  # 404 unknown_endpoint: not the shape of an id of that kind
                raise
    raise not_found(text, client.server)


async def resolve_folder(client: GatewayClient, text: str) -> dict:
    """The folder ``text`` names; a file there is a usage error (exit 2)."""
    entry = await resolve(client, text)
    if entry_kind(entry) != "folder":
        raise UsageError(printable(f"{text} is a file, not a folder"))
    return entry


async def find(client: GatewayClient, text: str) -> dict | None:
    """The file or folder ``text`` names, or None when nothing is there."""
    try:
        return await resolve(client, text)
    except NotFound:
        return None


async def destination(client: GatewayClient, text: str, sources: int, only: dict | None = None) -> tuple[dict, str | None]:
    """Where ``mv``/``cp`` put ``sources`` things: (the folder, the new name or None to keep each one's name).

    As ``mv`` and ``cp`` do: an existing folder takes the sources under their
    own names; otherwise ``text`` is a new path for the one source, in a folder
    that must exist. A file already at ``text`` is for the gateway to refuse
    (``name_taken``) or to pass by with ``--autorename``. ``text`` naming the
    one source itself (``/Report.pdf`` to ``/report.pdf``: the same name to the
    contract) is a new spelling of its name: ``only`` is the one source, when there is one.
    """
    found = await find(client, text)
    renamed = only is not None and found is not None and same(only, found)
    if found is not None and entry_kind(found) == "folder" and not renamed:
        return found, None
    if sources > 1:
        raise UsageError(printable(f"{text} is not a folder; with several sources the destination must be one"))
    if not is_path(text):
        raise NotFound(printable(f"no folder has the id {text}; name a new place by its path (starting with '/')"))
    path = remote_path(text)
    parent = await resolve_folder(client, parent_path(path))
    return parent, base_name(path)


def describe(entry: dict) -> str:
    """How messages name an entry: its path when it has one, else its kind and id."""
    return str(entry.get("path") or f"{entry_kind(entry)} {entry_id(entry)}")


def child_path(folder: dict, name: str) -> str:
    return join_path(str(folder.get("path") or ROOT_PATH), name)


def same(a: dict, b: dict) -> bool:
    return entry_kind(a) == entry_kind(b) and entry_id(a) == entry_id(b)
