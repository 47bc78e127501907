"""Two gateway processes on one database share their permission cache through a real Redis."""
from __future__ import annotations

import os

from storage.embedded import free_port
from tests.harness import Api, upload

CHUNK = 5 * 1024 * 1024


async def test_an_unshare_on_one_gateway_is_seen_at_once_by_another(make_gateway, http, redis_url):
    gateway_a = await make_gateway(chunk_size=CHUNK, cache_url=redis_url)
    gateway_b = await make_gateway(chunk_size=CHUNK, cache_url=redis_url, port=free_port())
    owner = await Api(http, gateway_a.url).signup()
    friend_on_a = await Api(http, gateway_a.url).signup()
    friend_on_b = Api(http, gateway_b.url, friend_on_a.token)
    file = await upload(owner, os.urandom(100), CHUNK)
    path = f"/dropbox/v1/files/{file['file_id']}"

    shared = await owner.post("/dropbox/v1/files/share", json={"file_id": file["file_id"], "users": [friend_on_a.username]})
    assert shared.status == 200
    for _ in range(3):  # fills the shared cache through gateway B
        assert (await friend_on_b.get(path)).status == 200

    assert (await owner.delete(f"{path}/shares/{friend_on_a.username}")).status == 204
    assert (await friend_on_b.get(path)).status == 404
    assert (await friend_on_b.get(f"{path}/content")).status == 404

    await owner.post("/dropbox/v1/files/share", json={"file_id": file["file_id"], "users": [friend_on_a.username]})
    assert (await friend_on_b.get(path)).status == 200
    assert (await owner.delete(path)).status == 204
    assert (await friend_on_b.get(path)).status == 404


async def test_the_shared_cache_holds_json_and_never_unpickles(make_gateway, http, redis_url, tmp_path):
    """Whoever can write to Redis must not run code in the gateway: entries are JSON, read as JSON."""
    import json
    import pickle

    from gateway.core import permissions

    gateway = await make_gateway(chunk_size=CHUNK, cache_url=redis_url)
    owner = await Api(http, gateway.url).signup()
    file = await upload(owner, os.urandom(100), CHUNK)
    path = f"/dropbox/v1/files/{file['file_id']}"
    assert (await owner.get(path)).status == 200  # fills the cache
    cache = gateway.core.permissions.cache
    key = permissions.cache_key(file["file_id"])
    entry = json.loads(await cache.get(key, loads_fn=lambda raw: raw))
    assert entry["owner_id"] == owner.user_id and entry["row"]["id"] == file["file_id"]

    marker = tmp_path / "code-ran"

    class Planted:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    await cache.set(key, pickle.dumps(Planted()), dumps_fn=lambda value: value)
    answer = await owner.get(path)
    assert answer.status == 200 and answer.body["file_id"] == file["file_id"]  # from the database instead
    assert not marker.exists()
