"""Health, readiness and configuration, with a store that really stops."""
from __future__ import annotations

import pytest

from tests.harness import Api, Gateway, gateway_config, start_store


async def test_healthz_and_readyz(api: Api):
    assert (await api.get("/healthz")).status == 200
    ready = await api.get("/readyz")
    assert ready.status == 200
    assert ready.body["checks"] == {"database": "ok", "store": "ok", "disk": "ok"}


@pytest.mark.real  # a store of its own, stopped
async def test_readyz_is_503_naming_the_store_when_it_stops(tmp_path, http):
    from storage.embedded import free_port

    store = start_store(tmp_path / "own-store")
    port = free_port()
    gateway = await Gateway(gateway_config(store, tmp_path / "db.sqlite3", port)).start()
    api = Api(http, gateway.url)
    try:
        assert (await api.get("/readyz")).status == 200
        store.stop()
        response = await api.get("/readyz")
        assert response.status == 503
        assert response.body["error"]["failing"] == ["store"]
        assert "store" in response.body["error"]["message"]
        assert response.body["checks"]["database"] == "ok"
        assert (await api.get("/healthz")).status == 200
    finally:
        await gateway.stop()
        store.stop()


async def test_config_lists_the_contract_fields(api: Api, gateway):
    response = await api.get("/dropbox/v1/config")
    assert response.status == 200
    assert response.body == {
        "chunk_size": gateway.config.chunk_size,
        "max_file_size": gateway.config.max_file_size,
        "inline_upload_limit": gateway.config.inline_upload_limit,
        "upload_url_ttl": gateway.config.upload_url_ttl,
        "download_url_ttl": gateway.config.download_url_ttl,
        "trash_retention": gateway.config.trash_retention,
        "version_retention": gateway.config.version_retention,
    }


async def test_unknown_path_and_wrong_method_answer_json_errors(api: Api):
    missing = await api.get("/dropbox/v1/nothing-here")
    assert missing.status == 404 and missing.body["error"]["code"] == "unknown_endpoint"
    wrong = await api.request("PUT", "/dropbox/v1/users")
    assert wrong.status == 405 and wrong.body["error"]["code"] == "method_not_allowed"
