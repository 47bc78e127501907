"""Prometheus metrics: counted on the real stack, bounded labels, on their own port only.

The gateway runs with its metrics listener (GATEWAY_METRICS_PORT) on a real
port, a real store and each database engine; the text is read back with
prometheus_client's own parser.
"""
from __future__ import annotations

import asyncio
import os
import secrets

from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Config
from gateway.core.metrics import Metrics, outcome_name
from storage.embedded import free_port
from tests.harness import Api, upload

CHUNK = 5 * 1024 * 1024
FILES = "/dropbox/v1/files"


async def metrics_gateway(make_gateway, **overrides):
    return await make_gateway(chunk_size=CHUNK, metrics_port=free_port(), **overrides)


def metrics_url(gateway) -> str:
    return f"http://127.0.0.1:{gateway.config.metrics_port}/metrics"


async def scrape(http, gateway) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}, parsed by prometheus_client's parser."""
    async with http.get(metrics_url(gateway)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def label_values(samples: dict, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for (sample, labels) in samples if sample == name}


async def test_an_upload_through_the_real_stack_moves_the_counters(make_gateway, http):
    gateway = await metrics_gateway(make_gateway)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(CHUNK + 4096)
    file = await upload(user, data, CHUNK)
    assert file["status"] == "uploaded"
    for _ in range(3):
        assert (await user.get(f"{FILES}/{file['file_id']}")).status == 200
    await gateway.core.reconcile_once()

    samples = await scrape(http, gateway)
    assert value(samples, "gateway_uploads_started_total") == 1
    assert value(samples, "gateway_uploads_completed_total") == 1
    assert value(samples, "gateway_uploads_failed_total") == 0
    assert value(samples, "gateway_upload_bytes_announced_total") == len(data)
    assert value(samples, "gateway_http_requests_total", method="POST", route=FILES, status="201") == 1
    assert value(samples, "gateway_http_requests_total", method="POST",
                 route=FILES + "/{file_id}/complete", status="200") == 1
    assert value(samples, "gateway_http_requests_total", method="GET", route=FILES + "/{file_id}", status="200") == 3
    assert value(samples, "gateway_http_request_duration_seconds_count", method="GET", route=FILES + "/{file_id}") == 3
    assert value(samples, "gateway_http_request_duration_seconds_bucket", method="GET", route=FILES + "/{file_id}",
                 le="+Inf") == 3
    # The final file's entry is filled once, then answered from the cache.
    assert value(samples, "gateway_permission_cache_lookups_total", result="hit") >= 2
    assert value(samples, "gateway_permission_cache_lookups_total", result="miss") >= 1
    assert value(samples, "gateway_reconciler_runs_total") == 1
    assert ("gateway_db_pool_checked_out_connections", ()) in samples

    # The store's webhook posts to this gateway: its events arrive on their own time.
    for _ in range(100):
        samples = await scrape(http, gateway)
        if value(samples, "gateway_store_events_received_total", kind="object_created"):
            break
        await asyncio.sleep(0.1)
    assert value(samples, "gateway_store_events_received_total", kind="object_created") >= 1
    assert label_values(samples, "gateway_store_events_ignored_total", "outcome") <= {
        "ignored_other_bucket", "ignored_not_content", "unknown_upload", "upload_gone", "still_present",
        "nothing_uploading", "not_completed", "written_whole"}


async def test_ids_and_tokens_never_become_label_values(make_gateway, http):
    gateway = await metrics_gateway(make_gateway)
    user = await Api(http, gateway.url).signup()
    await user.get(f"{FILES}/{secrets.token_hex(16)}")
    before = await scrape(http, gateway)
    ids = [secrets.token_hex(16) for _ in range(50)]
    for file_id in ids:
        assert (await user.get(f"{FILES}/{file_id}")).status == 404
    token = "link-token-" + secrets.token_hex(12)
    for path in (f"/s/{token}", f"/dropbox/v1/links/{token}", f"/nowhere/{token}"):
        await user.get(path)
    async with http.get(metrics_url(gateway)) as resp:
        text = await resp.text()
    after = await scrape(http, gateway)

    assert not any(file_id in text for file_id in ids) and token not in text
    new_series = {key for key in after if key not in before and key[0].startswith("gateway_http_")}
    assert {dict(labels)["route"] for _, labels in new_series} <= {"unmatched", "/s/{token}",
                                                                   "/dropbox/v1/links/{link}"}
    assert value(after, "gateway_http_requests_total", method="GET", route=FILES + "/{file_id}", status="404") == 51
    assert all(route == "unmatched" or route.startswith("/")
               for route in label_values(after, "gateway_http_requests_total", "route"))


async def test_metrics_are_served_on_their_own_port_only(make_gateway, http):
    gateway = await metrics_gateway(make_gateway)
    async with http.get(gateway.url + "/metrics") as resp:
        assert resp.status == 404  # the API's (public) port knows no /metrics
        assert (await resp.json())["error"]["code"] == "unknown_endpoint"
    async with http.get(metrics_url(gateway).replace("/metrics", FILES)) as resp:
        assert resp.status == 404  # and the metrics port serves nothing else
    assert Config.metrics_port == 0 and Config.metrics_host == "127.0.0.1"  # off unless asked for, loopback


def test_each_registry_counts_apart():
    first, second = Metrics(), Metrics()
    first.upload_started(10)
    assert first.registry.get_sample_value("gateway_uploads_started_total") == 1
    assert second.registry.get_sample_value("gateway_uploads_started_total") == 0


def test_store_event_outcomes_lose_their_details():
    assert outcome_name("progress:3_pending") == "progress"
    assert outcome_name("uploads:uploaded,failed") == "uploads"
    metrics = Metrics()
    metrics.store_event("part_uploaded", "progress:2_pending")
    metrics.store_event("object_created", "nothing_uploading")
    metrics.store_event("object_created", "not_completed:uploading")
    assert metrics.registry.get_sample_value("gateway_store_events_received_total", {"kind": "object_created"}) == 2
    assert metrics.registry.get_sample_value("gateway_store_events_ignored_total", {"outcome": "not_completed"}) == 1
    assert metrics.registry.get_sample_value("gateway_store_events_ignored_total", {"outcome": "progress"}) is None


def test_compose_keeps_the_metrics_port_unpublished():
    """Both compose files serve metrics inside their network and publish only the API's port."""
    import yaml

    from tests.test_deploy import ROOT, environment, port_mappings

    for name in ("docker-compose.yml", "docker-compose.scale.yml"):
        gateway = yaml.safe_load((ROOT / name).read_text())["services"]["gateway"]
        env = environment(gateway)
        metrics_port = int(env["GATEWAY_METRICS_PORT"])
        assert metrics_port and metrics_port != int(env["GATEWAY_PORT"]), name
        assert env["GATEWAY_METRICS_HOST"] == "0.0.0.0", f"{name}: the scraper is another container"
        assert metrics_port not in {container for _, container in port_mappings(gateway)}, name
