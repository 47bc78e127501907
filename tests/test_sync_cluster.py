"""`dbx sync` against the cluster's shape (`./dev up --cluster`): two `python -m gateway` processes on one
PostgreSQL and one Redis, behind the real nginx load balancer (deploy/lb.conf.template), with the real store and
CDN tier. Both clients talk to the balancer only, so their calls, their change waits and the journal's wake-ups
cross from gateway to gateway (LISTEN/NOTIFY).

Checked: two clients left running follow each other's changes through the balancer; then one gateway is killed
(SIGKILL) and both clients, started again, still converge with nothing lost through the one left.
"""
from __future__ import annotations

import secrets
import signal

import pytest

from tests.harness import Api
from tests.test_balancer import make_balancer, start_gateways, stop_gateways, upstreams  # noqa: F401 - a fixture
from tests.test_client import CHUNK, PASSWORD, Dbx
from tests.test_sync_end_to_end import contents, converge, folder, follow_each_other, remote_contents


@pytest.fixture
async def cluster_clients(store, cdn, postgres_cluster, postgres_template, redis_url, make_balancer, http, tmp_path):
    """The cluster, and a laptop and a desktop of one user, both through its balancer; then its gateways."""
    name = f"sync_cluster_{secrets.token_hex(6)}"
    database = postgres_cluster.create_database(name, template=postgres_template)
    pair = start_gateways(store, tmp_path, database_url=database, cache_url=redis_url, chunk_size=CHUNK,
                          cdn_url=cdn.url)
    try:
        balancer = make_balancer([g.port for g in pair])
        api = await Api(http, balancer.url).signup(password=PASSWORD)
        clients = []
        for machine in ("laptop", "desktop"):
            dbx = Dbx(tmp_path / machine, balancer.url)
            await dbx.login(api.username)
            folder(dbx).mkdir()
            clients.append(dbx)
        yield (*clients, api, pair, balancer)
    finally:
        stop_gateways(pair)
        postgres_cluster.drop_database(name)


async def test_two_clients_sync_through_the_cluster_and_a_lost_gateway(cluster_clients):
    laptop, desktop, api, gateways, balancer = cluster_clients
    await follow_each_other(laptop, desktop, api)
    journal = [e for e in balancer.access_log() if e["path"].startswith("/dropbox/v1/changes")]
    assert {address for e in journal for address in upstreams(e)} == {f"127.0.0.1:{g.port}" for g in gateways}

    gateways[0].process.send_signal(signal.SIGKILL)  # no goodbye: the balancer finds out by refused connections
    gateways[0].process.wait()
    (folder(laptop) / "after the loss.txt").write_text("written once a gateway was gone\n")
    (folder(desktop) / "notes" / "done.txt").write_text("edited on the desktop meanwhile\n")
    await converge(laptop, desktop)
    assert contents(folder(laptop)) == contents(folder(desktop))
    assert (folder(desktop) / "after the loss.txt").read_text() == "written once a gateway was gone\n"
    assert (folder(laptop) / "notes" / "done.txt").read_text() == "edited on the desktop meanwhile\n"
    assert set(await remote_contents(api)) == {"before.txt", "notes", "notes/done.txt", "after the loss.txt"}
