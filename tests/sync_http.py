"""The in-memory server of tests/sync_server.py behind the contract's HTTP routes, with a store and a CDN of its own.

What ``client.sync.remote.HttpRemote`` sends must be what the contract says:
``GET /changes`` (``cursor``, ``limit``; 410 ``cursor_reset``), ``/changes/wait``,
``POST /folders`` (``path``, or ``parent_id`` and ``name``; 409 ``name_taken``),
``PATCH`` and ``DELETE`` of files and folders, and uploads into the tree:
``POST /files`` with ``parent_id``, ``mode`` and ``replaces``, chunks sent to
presigned URLs (the store checks each chunk's SHA-256, as the real one does
with the signed checksum header), ``complete``; downloads from the file
object's ``download_url`` with ``Range``. Anything else answers 404
``unknown_endpoint``, so a call the contract does not have fails the test.
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable

from aiohttp import web

from client.sync.remote import CursorReset, RemoteFailure
from protocol.fingerprints import chunk_count, chunk_fingerprint
from tests.sync_server import MemoryServer

API = "/dropbox/v1"


def error(status: int, code: str, message: str = "", **details) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message or code, **details}}, status=status)


class ContractApp:
    def __init__(self, server: MemoryServer, inline_upload_limit: int = 64, auto_complete: bool = False):
        self.server = server
        self.inline_upload_limit = inline_upload_limit
        # Finish an upload as soon as the store holds every chunk, without `complete` (as a gateway following
        # the store's events does).
        self.auto_complete = auto_complete
        self.announced: list[dict] = []  # the metadata of every upload, chunked or inline
        self.uploads: dict[str, dict] = {}  # upload id -> the announced body, and the chunks the store has
        self.calls: list[str] = []  # "METHOD route" of each call, for tests to count
        self.refuse: dict[str, tuple[int, str]] = {}  # "METHOD route" -> (status, code) to answer instead
        self.before: dict[str, Callable[[], None]] = {}  # "METHOD route" -> what happens as such a call arrives
        self.url = ""
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self.record])
        r = app.router
        r.add_get(f"{API}/config", self.config)
        r.add_get(f"{API}/changes", self.changes)
        r.add_get(f"{API}/changes/wait", self.wait)
        r.add_post(f"{API}/folders", self.make_folder)
        r.add_patch(f"{API}/folders/{{id}}", self.patch)
        r.add_patch(f"{API}/files/{{id}}", self.patch)
        r.add_delete(f"{API}/folders/{{id}}", self.delete)
        r.add_delete(f"{API}/files/{{id}}", self.delete)
        r.add_post(f"{API}/files", self.announce)
        r.add_post(f"{API}/files/{{id}}/upload-urls", self.upload_urls)
        r.add_post(f"{API}/files/{{id}}/complete", self.complete)
        r.add_get(f"{API}/files/{{id}}", self.file)
        r.add_put("/store/{id}/{index}", self.store_put)
        r.add_get("/cdn/{id}", self.cdn)
        self.app = app

    @web.middleware
    async def record(self, request: web.Request, handler):
        route = request.match_info.route.resource
        self.calls.append(f"{request.method} {route.canonical if route else request.path}")
        if route is None:
            return error(404, "unknown_endpoint")
        hook = self.before.get(self.calls[-1])
        if hook is not None:
            hook()
        refused = self.refuse.get(self.calls[-1])
        if refused is not None:
            return error(*refused)
        try:
            return await handler(request)
        except RemoteFailure as exc:
            status = 404 if exc.gone else 400 if exc.code == "invalid_name" else 409
            return error(status, exc.code, str(exc))

    async def start(self) -> ContractApp:
        self.runner = web.AppRunner(self.app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    def count(self, call: str) -> int:
        return self.calls.count(call)

    # -- the tree and the journal ------------------------------------------------------------------

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response({"chunk_size": self.server.chunk_size, "max_file_size": 1 << 40,
                                  "inline_upload_limit": self.inline_upload_limit, "upload_url_ttl": 3600,
                                  "download_url_ttl": 3600})

    async def changes(self, request: web.Request) -> web.Response:
        try:
            page = await self.server.changes(request.query.get("cursor"))
        except CursorReset as exc:
            return error(410, "cursor_reset", str(exc))
        return web.json_response({"changes": page.changes, "cursor": page.cursor, "has_more": page.has_more})

    async def wait(self, request: web.Request) -> web.Response:
        return web.json_response({"changes": await self.server.wait(request.query["cursor"], 0)})

    async def make_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "path" in body:
            node = await self.server.folder_at(body["path"])
            return web.json_response(self.server.obj(node), status=201)
        return web.json_response(await self.server.mkdir(body["parent_id"], body["name"]), status=201)

    async def patch(self, request: web.Request) -> web.Response:
        body = await request.json()
        folder = "/folders/" in request.path
        node = self.server.nodes.get(request.match_info["id"])
        if node is None:
            return error(404, "not_found")
        return web.json_response(await self.server.move(request.match_info["id"], folder,
                                                        body.get("parent_id", node.parent), body.get("name", node.name)))

    async def delete(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]
        if node_id in self.uploads and node_id not in self.server.nodes:
            del self.uploads[node_id]  # an upload in progress, in no tree yet: deleted at once
        else:
            await self.server.delete(node_id, "/folders/" in request.path)
        return web.Response(status=204)

    # -- uploads into the tree -------------------------------------------------------------------

    def upload_obj(self, upload_id: str) -> dict:
        if upload_id in self.server.nodes:
            return self.file_obj(upload_id)
        up = self.uploads[upload_id]
        chunks = [{"index": i, "fingerprint": fp, "status": "uploaded" if i in up["stored"] else "pending"}
                  for i, fp in enumerate(up["chunks"])]
        return {"type": "file", "file_id": upload_id, "file_name": up["file_name"], "name": up["file_name"],
                "file_size": up["file_size"], "fingerprint": up["fingerprint"], "status": "uploading",
                "chunk_size": up["chunk_size"], "total_chunks": len(chunks), "chunks": chunks,
                "uploaded_chunks": len(up["stored"])}

    def file_obj(self, file_id: str) -> dict:
        node = self.server.nodes.get(file_id) or self.server.versions[file_id]
        data, size = node.data or b"", self.server.chunk_size
        chunks = [{"index": i, "fingerprint": chunk_fingerprint(data[i * size:(i + 1) * size]), "status": "uploaded"}
                  for i in range(chunk_count(len(data), size))]
        obj = self.server.obj(file_id) if file_id in self.server.nodes else {"file_id": file_id}
        return {**obj, "file_size": len(data), "fingerprint": node.fingerprint, "status": "uploaded",
                "chunk_size": size, "total_chunks": len(chunks), "uploaded_chunks": len(chunks), "chunks": chunks,
                "download_url": f"{self.url}/cdn/{file_id}"}

    async def inline(self, request: web.Request) -> web.Response:
        """multipart/form-data: ``file_metadata`` (JSON) and ``file`` (the bytes), committed at once."""
        parts: dict[str, bytes] = {}
        async for part in await request.multipart():
            parts[part.name or ""] = await part.read()  # type: ignore[union-attr]
        if len(parts.get("file", b"")) > self.inline_upload_limit:
            return error(413, "inline_upload_too_large")
        metadata = json.loads(parts["file_metadata"])
        self.announced.append(metadata)
        if metadata.get("mode", "add") not in ("add", "update"):
            return error(400, "invalid_mode")
        obj = self.server.commit(metadata.get("parent_id", "root"), metadata["file_name"], parts["file"],
                                 metadata.get("mode", "add"), metadata.get("replaces"))
        return web.json_response(self.file_obj(obj["file_id"]), status=201)

    async def announce(self, request: web.Request) -> web.Response:
        if request.content_type == "multipart/form-data":
            return await self.inline(request)
        body = await request.json()
        self.announced.append(body)
        if body.get("mode", "add") not in ("add", "update") or (body.get("mode") == "update") != ("replaces" in body):
            return error(400, "invalid_mode")
        holder = self.server.holder(body.get("parent_id", "root"), body["file_name"])
        if body.get("mode", "add") == "add" and holder is not None \
                and self.server.nodes[holder].fingerprint == body["fingerprint"]:
            return web.json_response(self.file_obj(holder))  # that file, at once: nothing is uploaded
        upload_id = self.server._new_id("f")
        self.uploads[upload_id] = {**body, "stored": {}}
        if not body["chunks"]:
            return await self._commit(upload_id, status=201)
        return web.json_response(self.upload_obj(upload_id), status=201)

    async def upload_urls(self, request: web.Request) -> web.Response:
        upload_id = request.match_info["id"]
        up = self.uploads[upload_id]
        wanted = (await request.json() or {}).get("chunks") if request.can_read_body else None
        indexes = wanted if wanted is not None else [i for i in range(len(up["chunks"])) if i not in up["stored"]]
        return web.json_response({"urls": [
            {"index": i, "url": f"{self.url}/store/{upload_id}/{i}", "method": "PUT",
             "headers": {"x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(up["chunks"][i])).decode()},
             "expires_at": None} for i in indexes if i not in up["stored"]]})

    async def store_put(self, request: web.Request) -> web.Response:
        up = self.uploads[request.match_info["id"]]
        index = int(request.match_info["index"])
        data = await request.read()
        signed = base64.b64decode(request.headers["x-amz-checksum-sha256"]).hex()
        if hashlib.sha256(data).hexdigest() != signed:
            return web.Response(status=400, text="<Error><Code>BadDigest</Code><Message>checksum</Message></Error>")
        up["stored"][index] = data
        if self.auto_complete and len(up["stored"]) == len(up["chunks"]):
            await self._commit(request.match_info["id"])
        return web.Response(status=200)

    async def complete(self, request: web.Request) -> web.Response:
        upload_id = request.match_info["id"]
        up = self.uploads[upload_id]
        missing = [i for i in range(len(up["chunks"])) if i not in up["stored"]]
        if missing:
            return error(409, "chunks_missing", missing=missing)
        return await self._commit(upload_id)

    async def _commit(self, upload_id: str, status: int = 200) -> web.Response:
        if upload_id in self.server.nodes:
            return web.json_response(self.file_obj(upload_id), status=status)
        up = self.uploads[upload_id]
        data = b"".join(up["stored"][i] for i in range(len(up["chunks"])))
        obj = self.server.commit(up.get("parent_id", "root"), up["file_name"], data, up.get("mode", "add"),
                                 up.get("replaces"), node_id=upload_id)
        return web.json_response(self.file_obj(obj["file_id"]), status=status)

    async def file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["id"]
        if file_id in self.uploads or file_id in self.server.nodes or file_id in self.server.versions:
            return web.json_response(self.upload_obj(file_id) if file_id not in self.server.versions
                                     else self.file_obj(file_id))
        return error(404, "not_found")

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        node = self.server.nodes.get(request.match_info["id"]) or self.server.versions.get(request.match_info["id"])
        if node is None:
            return web.Response(status=404)
        data = node.data or b""
        header = request.headers.get("Range")
        if not header:
            return web.Response(body=data)
        start, end = (int(x) for x in header.removeprefix("bytes=").split("-"))
        return web.Response(status=206, body=data[start:end + 1],
                            headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"})
