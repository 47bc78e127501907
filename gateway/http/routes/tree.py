"""The tree (contract v1.2): folders and their entries, metadata by path, renames and moves, copies,
versions, the trash and search. Each handler reads the request, asks gateway/core/tree.py, and renders."""
from __future__ import annotations

from aiohttp import web

from gateway.core.tree import Entry
from gateway.db.nodes import FILE, FOLDER
from gateway.http import appkeys
from gateway.http.errors import bad_request
from gateway.http.parsing import (
    FILE_ID, FOLDER_ID, MAX_QUERY_PATH, TRASH_ID, entries_cursor, entries_cursor_after, page_limit, read_json, read_optional_json,
    require_str, trash_cursor, trash_cursor_after,
)
from gateway.http.views import entries_json, entry_json, listed_file_json, with_thumbnails

routes = web.RouteTableDef()

MAX_NAME = 1024  # characters; the contract's limit (255 bytes) is the core's to check (invalid_name)
MAX_PATH = 64 * 1024
MAX_QUERY = 1024


def optional_bool(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad_request(f"`{name}` must be true or false", "invalid_field", field=name)
    return value


async def entry_response(request: web.Request, entry: Entry, status: int = 200) -> web.Response:
    core = request.app[appkeys.CORE]
    return web.json_response(await with_thumbnails(core, entry_json(core, entry)), status=status)


def user_of(request: web.Request) -> int:
    return request[appkeys.USER].user_id


# --- folders --------------------------------------------------------------------------------------------

@routes.post("/dropbox/v1/folders")
async def create_folder(request: web.Request) -> web.Response:
    """``{path}`` (missing parents made; an existing folder there is 200) or ``{parent_id, name}``."""
    body = await read_json(request)
    path = require_str(body, "path", max_length=MAX_PATH, optional=True)
    parent_id = require_str(body, "parent_id", max_length=64, optional=True)
    name = require_str(body, "name", max_length=MAX_NAME, optional=True)
    if (path is None) == (name is None) or (path is not None and parent_id is not None):
        raise bad_request("give `path`, or `parent_id` and `name`", "invalid_field", field="path")
    entry, made = await request.app[appkeys.CORE].tree.make_folder(
        user_of(request), path=path, parent_id=parent_id, name=name, autorename=optional_bool(body, "autorename"))
    return await entry_response(request, entry, 201 if made else 200)


@routes.get(f"/dropbox/v1/folders/{FOLDER_ID}")
async def get_folder(request: web.Request) -> web.Response:
    entry = await request.app[appkeys.CORE].tree.folder(user_of(request), request.match_info["folder_id"])
    return await entry_response(request, entry)


@routes.get(f"/dropbox/v1/folders/{FOLDER_ID}/entries")
async def folder_entries(request: web.Request) -> web.Response:
    """Folders first, then files, each by name without regard to case; keyset paging (``cursor``)."""
    core = request.app[appkeys.CORE]
    page = await core.tree.entries(user_of(request), request.match_info["folder_id"], page_limit(request.query),
                                   entries_cursor(request.query))
    cursor = entries_cursor_after(page.cursor) if page.cursor else None
    return web.json_response({"entries": await entries_json(core, page.entries), "cursor": cursor})


@routes.patch(f"/dropbox/v1/folders/{FOLDER_ID}")
async def update_folder(request: web.Request) -> web.Response:
    return await move(request, request.match_info["folder_id"], FOLDER)


@routes.delete(f"/dropbox/v1/folders/{FOLDER_ID}")
async def delete_folder(request: web.Request) -> web.Response:
    await request.app[appkeys.CORE].tree.trash(user_of(request), request.match_info["folder_id"], FOLDER)
    return web.Response(status=204)


async def move(request: web.Request, node_id: str, kind: str) -> web.Response:
    """Rename and/or move (``name``, ``parent_id``, ``autorename``): the same id, at its new place."""
    body = await read_optional_json(request)
    name = require_str(body, "name", max_length=MAX_NAME, optional=True)
    parent_id = require_str(body, "parent_id", max_length=64, optional=True)
    entry = await request.app[appkeys.CORE].tree.move(
        user_of(request), node_id, kind, name=name, parent_id=parent_id, autorename=optional_bool(body, "autorename"))
    return await entry_response(request, entry)


# --- files in the tree ----------------------------------------------------------------------------------

@routes.patch(f"/dropbox/v1/files/{FILE_ID}")
async def update_file(request: web.Request) -> web.Response:
    return await move(request, request.match_info["file_id"], FILE)


@routes.post(f"/dropbox/v1/files/{FILE_ID}/copy")
async def copy_file(request: web.Request) -> web.Response:
    body = await read_optional_json(request)
    entry = await request.app[appkeys.CORE].tree.copy(
        user_of(request), request.match_info["file_id"],
        parent_id=require_str(body, "parent_id", max_length=64, optional=True),
        name=require_str(body, "name", max_length=MAX_NAME, optional=True),
        autorename=optional_bool(body, "autorename"),
    )
    return await entry_response(request, entry, 201)


@routes.get(f"/dropbox/v1/files/{FILE_ID}/versions")
async def versions(request: web.Request) -> web.Response:
    core = request.app[appkeys.CORE]
    rows = await core.tree.versions(user_of(request), request.match_info["file_id"])
    return web.json_response({"versions": [listed_file_json(row, row["total_chunks"], core.files.download(row))
                                           for row in rows]})


@routes.post(f"/dropbox/v1/files/{FILE_ID}/restore")
async def restore_version(request: web.Request) -> web.Response:
    core = request.app[appkeys.CORE]
    row = await core.tree.restore_version(user_of(request), request.match_info["file_id"])
    return web.json_response(listed_file_json(row, row["total_chunks"], core.files.download(row)))


@routes.get("/dropbox/v1/metadata")
async def metadata(request: web.Request) -> web.Response:
    path = request.query.get("path")
    if path is None or len(path) > MAX_QUERY_PATH:
        raise bad_request(f"`path` (the whole path, `/` for the root, at most {MAX_QUERY_PATH} characters) is required",
                          "invalid_field", field="path")
    return await entry_response(request, await request.app[appkeys.CORE].tree.metadata(user_of(request), path))


@routes.get("/dropbox/v1/search")
async def search(request: web.Request) -> web.Response:
    query = request.query.get("q", "")
    if not query or len(query) > MAX_QUERY or "\x00" in query:
        raise bad_request(f"`q` must be 1 to {MAX_QUERY} characters of a name", "invalid_field", field="q")
    core = request.app[appkeys.CORE]
    found = await core.tree.search(user_of(request), query, page_limit(request.query))
    return web.json_response({"entries": await entries_json(core, found)})


# --- the trash ------------------------------------------------------------------------------------------

@routes.get("/dropbox/v1/trash")
async def trash(request: web.Request) -> web.Response:
    core = request.app[appkeys.CORE]
    entries, cursor = await core.tree.trash_page(user_of(request), page_limit(request.query), trash_cursor(request.query))
    return web.json_response({"entries": [entry_json(core, entry) for entry in entries],
                              "cursor": trash_cursor_after(cursor) if cursor else None})


@routes.post(f"/dropbox/v1/trash/{TRASH_ID}/restore")
async def restore(request: web.Request) -> web.Response:
    entry = await request.app[appkeys.CORE].tree.restore(user_of(request), request.match_info["id"])
    return await entry_response(request, entry)


@routes.delete(f"/dropbox/v1/trash/{TRASH_ID}")
async def delete_for_good(request: web.Request) -> web.Response:
    await request.app[appkeys.CORE].tree.delete_for_good(user_of(request), request.match_info["id"])
    return web.Response(status=204)
