"""Real parts for the tests: a SeaweedFS store, the gateway on a real port, an HTTP client."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.core.clock import Clock
from gateway.http.app import create_app, server_options
from gateway.config import Config
from storage import ObjectStore
from storage.embedded import EmbeddedStore, free_port

ACCESS_KEY = "testaccess"
SECRET_KEY = "testsecret-" + secrets.token_hex(8)
BUCKET = "test-content"
# The CDN tier's read-only store key (tests/cdn_fixtures.py).
CDN_ACCESS_KEY = "testcdn"
CDN_SECRET_KEY = "testcdnsecret-" + secrets.token_hex(8)
EVENTS_TOKEN = "events-" + secrets.token_hex(16)
EVENTS_PATH = "/dropbox/v1/events/seaweedfs"
# This checkout (or git worktree), and the dbx console script of the virtualenv running the tests.
CHECKOUT = Path(__file__).resolve().parent.parent
DBX = shutil.which("dbx", path=str(Path(sys.executable).parent)) or shutil.which("dbx")


def this_checkout_first(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with this checkout first on PYTHONPATH, for a subprocess (``dbx`` above all) that imports our packages.

    The console script imports the client of the checkout it was installed
    from (an editable install), and a git worktree may share another
    checkout's virtualenv: without this, ``dbx`` would run that other client.
    """
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))}


def raw_s3(endpoint: str):
    """The tests' own S3 client (boto3, not storage/), to see what the store really holds."""
    import boto3
    from botocore.config import Config as BotoConfig

    config = BotoConfig(s3={"addressing_style": "path"}, request_checksum_calculation="when_required")
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name="us-east-1", config=config)


def start_store(data_dir: Path, gateway_port: int | None = None, attempts: int = 3) -> EmbeddedStore:
    """A store on a free S3 port. The port is picked before weed binds it, so another process on the
    machine may take it in between; weed then exits saying so (EmbeddedStore.start leaves a port it was
    given to its caller), and the store starts again on a fresh one. A session's tests all stand on
    this store: one lost race must not fail them all."""
    webhook = f"http://127.0.0.1:{gateway_port}{EVENTS_PATH}" if gateway_port else None
    # The web app's pages, served by the test gateway, PUT chunks to the store (CORS).
    origins = (f"http://127.0.0.1:{gateway_port}",) if gateway_port else ()
    for attempt in range(1, attempts + 1):
        store = EmbeddedStore(
            data_dir,
            ACCESS_KEY,
            SECRET_KEY,
            BUCKET,
            s3_port=free_port(),
            webhook_url=webhook,
            webhook_token=EVENTS_TOKEN,
            reader_keys=(CDN_ACCESS_KEY, CDN_SECRET_KEY),
            cors_origins=origins,
        )
        try:
            return store.start()
        except RuntimeError as error:
            if attempt == attempts or "specified by flag s3.port)" not in str(error):
                raise
    raise AssertionError("unreachable")


def gateway_config(store: EmbeddedStore, database_path: Path, port: int, **overrides: Any) -> Config:
    values = dict(
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        database_path=str(database_path),
        s3_endpoint=store.endpoint,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        s3_bucket=BUCKET,
        jwt_secret="test-jwt-secret-" + "x" * 32,
        events_token=EVENTS_TOKEN,
        cdn_secret="test-cdn-secret",
        # The tests drive reconciliation themselves unless they ask for it.
        reconcile_interval=3600.0,
    )
    values.update(overrides)
    config = Config(**values)
    config.validate()
    return config


@dataclass
class Gateway:
    """A gateway app served on a real port; restartable on the same database."""

    config: Config
    # The core's clock; None: the system's. A test that moves time passes a FakeClock (tests/core_fixtures.py).
    clock: Clock | None = None
    # The object store; None: the S3 store the config names (tests/app_fixtures.py passes the in-memory one).
    store: ObjectStore | None = None
    runner: web.AppRunner | None = None
    app: web.Application | None = None

    @property
    def core(self):
        """The running app's domain core (gateway/core): its database, store, uploads, ..."""
        from gateway.http.appkeys import CORE

        return self.app[CORE]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    async def start(self) -> Gateway:
        self.app = create_app(self.config, store=self.store, clock=self.clock)
        self.runner = web.AppRunner(self.app, access_log=None, **server_options(self.config))
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.config.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


def gateway_env(config: Config) -> dict[str, str]:
    """The environment ``python -m gateway`` reads ``config`` from (GATEWAY_* variables, as in production)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    for setting in dataclasses.fields(Config):
        value = getattr(config, setting.name)
        env[f"GATEWAY_{setting.name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@dataclass
class Response:
    status: int
    body: Any
    headers: dict = field(default_factory=dict)


class Api:
    """A thin client for the gateway's JSON API."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None = None):
        self.session = session
        self.base_url = base_url
        self.token = token

    def as_user(self, token: str | None) -> Api:
        return Api(self.session, self.base_url, token)

    async def request(self, method: str, path: str, *, json: Any = None, data: Any = None,
                      headers: dict | None = None, token: str | None = None, **kwargs) -> Response:
        headers = dict(headers or {})
        token = token or self.token
        if token:
            headers.setdefault("Authorization", f"Bearer {token}")
        async with self.session.request(method, self.base_url + path, json=json, data=data,
                                        headers=headers, allow_redirects=False, **kwargs) as resp:
            raw = await resp.read()
            try:
                body = await resp.json(content_type=None) if raw else None
            except ValueError:
                body = raw
            return Response(resp.status, body, resp.headers.copy())

    async def get(self, path: str, **kwargs) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs) -> Response:
        return await self.request("POST", path, **kwargs)

    async def delete(self, path: str, **kwargs) -> Response:
        return await self.request("DELETE", path, **kwargs)

    async def patch(self, path: str, **kwargs) -> Response:
        return await self.request("PATCH", path, **kwargs)

    async def signup(self, username: str | None = None, password: str = "correct horse battery") -> Api:
        """Create a user, log in and return an Api acting as them."""
        username = username or "user-" + secrets.token_hex(4)
        created = await self.post(
            "/dropbox/v1/users", json={"username": username, "email": f"{username}@example.com", "password": password}
        )
        assert created.status == 201, created.body
        login = await self.post("/dropbox/v1/tokens", json={"username": username, "password": password})
        assert login.status == 200, login.body
        api = self.as_user(login.body["access_token"])
        api.username = username
        api.user_id = created.body["user_id"]
        return api


def make_claim(data: bytes, chunk_size: int, file_name: str = "file.bin", file_type: str | None = None) -> dict:
    """The JSON body of POST /dropbox/v1/files for ``data``, fingerprints as the contract defines them."""
    from protocol.fingerprints import fingerprint_bytes

    fingerprint, chunks = fingerprint_bytes(data, chunk_size)
    claim = {
        "file_name": file_name,
        "file_size": len(data),
        "fingerprint": fingerprint,
        "chunk_size": chunk_size,
        "chunks": chunks,
    }
    if file_type:
        claim["file_type"] = file_type
    return claim


async def put_chunks(api: Api, file_id: str, data: bytes, chunk_size: int, indexes: list[int] | None = None,
                     parallel: int = 4) -> list[int]:
    """Send chunks straight to the store with the presigned URLs, in parallel; return the statuses."""
    body = {"chunks": indexes} if indexes is not None else None
    urls = await api.post(f"/dropbox/v1/files/{file_id}/upload-urls", json=body)
    assert urls.status == 200, urls.body
    limit = asyncio.Semaphore(parallel)

    async def send(entry) -> int:
        start = entry["index"] * chunk_size
        async with limit, api.session.request(
            entry["method"], entry["url"], data=data[start : start + chunk_size], headers=entry["headers"]
        ) as resp:
            await resp.read()
            return resp.status

    return await asyncio.gather(*(send(entry) for entry in urls.body["urls"]))


async def upload(api: Api, data: bytes, chunk_size: int, **claim_args) -> dict:
    """The whole client flow: claim, send missing chunks, complete. Returns the file object."""
    started = await api.post("/dropbox/v1/files", json=make_claim(data, chunk_size, **claim_args))
    assert started.status in (200, 201), started.body
    file = started.body
    if file["status"] == "uploading":
        missing = [c["index"] for c in file["chunks"] if c["status"] != "uploaded"]
        statuses = await put_chunks(api, file["file_id"], data, chunk_size, missing)
        assert set(statuses) <= {200}, statuses
        done = await api.post(f"/dropbox/v1/files/{file['file_id']}/complete")
        assert done.status == 200, done.body
        file = done.body
    return file
