"""Slow clients (slowloris) against the CDN tier's nginx: its own instance with one worker (tests/slowloris.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from cdn.nginx import start_local_cdn
from storage.embedded import free_port
from tests.cdn_fixtures import cdn_environment
from tests.slowloris import HELD, request_from, held_half_sent


@pytest.fixture
def one_worker_cdn(store, tmp_path):
    local = start_local_cdn(tmp_path / "cdn", cdn_environment(store, "slow-clients-secret"), free_port(), workers="1")
    yield local
    local.stop()


async def test_a_client_holding_many_half_sent_requests_does_not_stop_another_clients(one_worker_cdn):
    """The review held 2,050 connections: the tier reset new ones ("worker_connections are not enough")."""
    async with held_half_sent(one_worker_cdn.port, HELD):
        answer = await request_from(one_worker_cdn.port, "/healthz")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_the_compose_tiers_take_as_many_connections_as_the_local_ones_can(tmp_path: Path):
    """The compose files' main configurations (static) allow what the local stack's allow at most."""
    from cdn.nginx import MAX_WORKER_CONNECTIONS, TEMPLATE_PATH

    root = TEMPLATE_PATH.parent.parent
    for main in (root / "cdn" / "nginx.main.conf", root / "deploy" / "lb.main.conf"):
        text = main.read_text()
        assert f"worker_connections {MAX_WORKER_CONNECTIONS};" in text, main
        assert f"worker_rlimit_nofile {2 * MAX_WORKER_CONNECTIONS};" in text, main


def test_connections_are_sized_from_the_open_file_limit():
    from cdn.nginx import MAX_WORKER_CONNECTIONS, connection_limits

    assert connection_limits(1024) == (512, 1024)  # two descriptors per proxied connection
    assert connection_limits(10 ** 6) == (MAX_WORKER_CONNECTIONS, 2 * MAX_WORKER_CONNECTIONS)
    assert connection_limits(100)[0] == 256  # never fewer than that, even where the limit is tiny
