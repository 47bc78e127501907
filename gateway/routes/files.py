"""Reading files: one file object, the caller's files, the download redirect."""
from __future__ import annotations

from aiohttp import web

from gateway import appkeys
from gateway.errors import bad_request, conflict
from gateway.files import FILE_SELECT, file_json, get_chunks, readable_file
from gateway.fingerprints import is_fingerprint

routes = web.RouteTableDef()


def download_for(app: web.Application, row) -> tuple[str, int] | None:
    if row["status"] != "uploaded":
        return None
    try:
        from gateway.downloads import download_url
    except ImportError:  # the CDN tier is not wired in yet
        return None
    return download_url(app[appkeys.CONFIG], app[appkeys.STORE], row["fingerprint"], row["file_name"], row["file_type"])


async def file_object(app: web.Application, row) -> dict:
    return file_json(row, await get_chunks(app, row["id"]), download_for(app, row))


async def file_response(request: web.Request, file_id: str, status: int = 200) -> web.Response:
    row = await readable_file(request.app, request[appkeys.USER].user_id, file_id)
    return web.json_response(await file_object(request.app, row), status=status)


@routes.get("/dropbox/v1/files")
async def list_files(request: web.Request) -> web.Response:
    fingerprint = request.query.get("fingerprint")
    params: list = [request[appkeys.USER].user_id]
    where = "f.owner_id = ?"
    if fingerprint is not None:
        if not is_fingerprint(fingerprint):
            raise bad_request("`fingerprint` must be a lowercase hex SHA-256", "invalid_fingerprint", field="fingerprint")
        where += " AND f.fingerprint = ?"
        params.append(fingerprint)
    rows = await request.app[appkeys.DB].fetchall(f"{FILE_SELECT} WHERE {where} ORDER BY f.seq DESC LIMIT 1000", params)
    return web.json_response({"files": [await file_object(request.app, row) for row in rows]})


@routes.get("/dropbox/v1/files/{file_id}")
async def get_file(request: web.Request) -> web.Response:
    return await file_response(request, request.match_info["file_id"])


@routes.get("/dropbox/v1/files/{file_id}/content")
async def content(request: web.Request) -> web.Response:
    row = await readable_file(request.app, request[appkeys.USER].user_id, request.match_info["file_id"])
    download = download_for(request.app, row)
    if download is None:
        raise conflict(f"the file is {row['status']}, not uploaded; nothing to download yet", "not_uploaded")
    raise web.HTTPFound(download[0])
