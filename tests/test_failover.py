"""Losing a gateway loses nothing: an upload survives the SIGKILL of the gateway that started it.

Two real gateway processes (`python -m gateway`) on one PostgreSQL (the tests'
private cluster) and one Redis, behind the real nginx load balancer
(deploy/lb.conf.template), with the session's real store. The client talks to
the balancer only; the gateway that answered the upload's start is killed
while the chunks go to the store, and the upload is finished through the
balancer. Every answer the client sees is checked: none is a 5xx.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import secrets

from gateway.core.content import content_key
from tests.harness import BUCKET, Api, Response, make_claim, raw_s3
from tests.test_balancer import make_balancer, start_gateways, stop_gateways  # noqa: F401 - a fixture

CHUNK = 5 * 1024 * 1024
FILES = "/dropbox/v1/files"


class WatchedApi(Api):
    """An Api that keeps every status it was answered, to check none was a 5xx."""

    def __init__(self, session, base_url, token=None, seen: list | None = None):
        super().__init__(session, base_url, token)
        self.seen = [] if seen is None else seen

    def as_user(self, token):
        return WatchedApi(self.session, self.base_url, token, self.seen)

    async def request(self, method: str, path: str, **kwargs) -> Response:
        response = await super().request(method, path, **kwargs)
        self.seen.append((method, path, response.status))
        return response


async def put_to_store(http, urls: dict[int, dict], data: bytes, indexes: list[int]) -> list[int]:
    """PUT chunks straight to the store (the presigned URLs); their statuses."""

    async def send(index: int) -> int:
        entry = urls[index]
        body = data[index * CHUNK : (index + 1) * CHUNK]
        async with http.request(entry["method"], entry["url"], data=body, headers=entry["headers"]) as resp:
            await resp.read()
            return resp.status

    return list(await asyncio.gather(*(send(index) for index in indexes)))


async def upload_urls(api: Api, file_id: str, indexes: list[int]) -> dict[int, dict]:
    answer = await api.post(f"{FILES}/{file_id}/upload-urls", json={"chunks": indexes})
    assert answer.status == 200, answer.body
    return {entry["index"]: entry for entry in answer.body["urls"]}


def served_by(balancer, method: str, path: str, timeout: float = 10.0) -> str:
    """The gateway (address) that answered the last ``method path`` the balancer logged."""
    entries = balancer.logged(method, path, timeout=timeout)
    assert entries, f"the balancer logged no {method} {path}"
    return entries[-1]["upstream"].split(",")[-1].strip()


async def test_killing_the_gateway_that_started_an_upload_loses_nothing(
        store, postgres_cluster, postgres_template, redis_url, make_balancer, http, tmp_path):
    name = f"failover_{secrets.token_hex(6)}"
    database = postgres_cluster.create_database(name, template=postgres_template)
    pair = start_gateways(store, tmp_path, database_url=database, cache_url=redis_url, chunk_size=CHUNK)
    try:
        balancer = make_balancer([g.port for g in pair])
        user = await WatchedApi(http, balancer.url).signup()
        data = os.urandom(4 * CHUNK + 12345)  # five chunks
        claim = make_claim(data, CHUNK)
        started = await user.post(FILES, json=claim)
        assert started.status == 201 and started.body["status"] == "uploading", started.body
        file_id = started.body["file_id"]
        starter_address = served_by(balancer, "POST", FILES)
        starter = next(g for g in pair if f"127.0.0.1:{g.port}" == starter_address)
        survivor = next(g for g in pair if g is not starter)

        urls = await upload_urls(user, file_id, [0, 1, 2])
        assert await put_to_store(http, urls, data, [0, 1]) == [200, 200]

        def kill() -> None:
            starter.process.kill()  # SIGKILL: no goodbye, no lease given back, nothing flushed
            starter.process.wait()

        # The gateway dies while a chunk is on its way to the store.
        statuses, _ = await asyncio.gather(put_to_store(http, urls, data, [2]), asyncio.to_thread(kill))
        assert statuses == [200] and not starter.alive()

        # The client goes on through the balancer: the rest of the URLs, the rest of the chunks, complete.
        rest = await upload_urls(user, file_id, [3, 4])
        assert await put_to_store(http, rest, data, [3, 4]) == [200, 200]
        done = await user.post(f"{FILES}/{file_id}/complete")
        assert done.status == 200 and done.body["status"] == "uploaded", done.body
        assert served_by(balancer, "POST", f"/dropbox/v1/files/{file_id}/complete").endswith(
            f":{survivor.port}")
        listed = await user.get(f"{FILES}/{file_id}")
        assert listed.status == 200 and listed.body["status"] == "uploaded"

        # The bytes: what the store holds under the content's key is exactly what was sent.
        held = await asyncio.to_thread(
            lambda: raw_s3(store.endpoint).get_object(Bucket=BUCKET, Key=content_key(claim["fingerprint"]))["Body"].read())
        assert hashlib.sha256(held).digest() == hashlib.sha256(data).digest()

        assert [entry for entry in user.seen if entry[2] >= 500] == [], user.seen
        assert len(user.seen) >= 7
    finally:
        stop_gateways(pair)
        postgres_cluster.drop_database(name)
