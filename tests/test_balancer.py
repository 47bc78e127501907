"""The gateways' load balancer (deploy/lb.conf.template) in front of real gateway processes.

Two `python -m gateway` processes on one SQLite file and the session's real store;
a real nginx with the template the local cluster and docker-compose.scale.yml use.
What is checked: both gateways get requests; a killed gateway costs no request;
a gateway that received a request and hangs makes the balancer try another one
for idempotent calls only (and for the POSTs the API makes safe to repeat).
"""
from __future__ import annotations

import json
import signal

import pytest

from deploy.balancer import check_config, start_balancer, write_config
from deploy.supervisor import GatewayProcess
from storage.embedded import free_port
from tests.harness import Api, gateway_config, gateway_env
from tests.slowloris import HELD, closed_by_the_server, held_half_sent, request_from

READ_TIMEOUT = "2s"  # how long the balancer waits for a hung gateway here


def start_gateways(store, directory, count: int = 2, **overrides) -> list[GatewayProcess]:
    """``count`` gateway processes on one database (SQLite in ``directory`` unless ``overrides`` say)."""
    started = []
    try:
        for number in range(1, count + 1):
            config = gateway_config(store, directory / "gateway.sqlite3", free_port(), **overrides)
            started.append(GatewayProcess(gateway_env(config), directory / f"gateway-{number}.log",
                                          name=f"gateway {number}").start())
    except Exception:
        stop_gateways(started)
        raise
    return started


def stop_gateways(gateways: list[GatewayProcess]) -> None:
    for gateway in gateways:
        if gateway.alive():
            gateway.process.send_signal(signal.SIGCONT)
        gateway.stop()


@pytest.fixture(scope="module")
def gateways(store, tmp_path_factory):
    started = start_gateways(store, tmp_path_factory.mktemp("lb-gateways"))
    yield started
    stop_gateways(started)


@pytest.fixture
def make_balancer(tmp_path):
    started = []

    def make(ports: list[int], **options):
        options.setdefault("workers", "1")
        balancer = start_balancer(tmp_path / f"lb-{len(started)}", free_port(), ports, **options)
        started.append(balancer)
        return balancer

    yield make
    for balancer in started:
        balancer.stop()


def upstreams(entry: dict) -> list[str]:
    return [address.strip() for address in entry["upstream"].split(",") if address.strip()]


async def answers(http, method: str, url: str, count: int, **kwargs) -> list[tuple[int, dict | str]]:
    results = []
    for _ in range(count):
        async with http.request(method, url, **kwargs) as resp:
            text = await resp.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            results.append((resp.status, body))
    return results


def test_the_template_renders_and_nginx_accepts_it(tmp_path):
    main = write_config(tmp_path, free_port(), [free_port(), free_port()])
    checked = check_config(main)
    assert checked.returncode == 0, checked.stderr
    rendered = (tmp_path / "lb.conf").read_text()
    assert "${" not in rendered.split("\nmap ", 1)[1], "a setting was left unfilled"


async def test_requests_reach_every_gateway(gateways, make_balancer, http):
    balancer = make_balancer([g.port for g in gateways])
    results = await answers(http, "GET", f"{balancer.url}/dropbox/v1/config", 6)
    assert [status for status, _ in results] == [200] * 6
    assert results[0][1]["chunk_size"] == int(gateways[0].env["GATEWAY_CHUNK_SIZE"])
    # nginx writes a line after its answer went out: wait for all six lines, do not read the log at once.
    served = {address for entry in balancer.logged("GET", "/dropbox/v1/config", 6) for address in upstreams(entry)}
    assert served == {f"127.0.0.1:{g.port}" for g in gateways}
    # The client's request id reaches the gateway (and comes back); without one, the balancer's goes.
    async with http.get(f"{balancer.url}/healthz", headers={"X-Request-Id": "lb-test-request"}) as resp:
        assert resp.status == 200 and resp.headers["X-Request-Id"] == "lb-test-request"
    async with http.get(f"{balancer.url}/healthz") as resp:
        request_id = resp.headers["X-Request-Id"]
    logged = {entry["request_id"] for entry in balancer.logged("GET", "/healthz", 2)}
    assert request_id in logged


async def test_metrics_stay_private_and_errors_keep_the_contracts_form(gateways, make_balancer, http):
    balancer = make_balancer([g.port for g in gateways])
    async with http.get(f"{balancer.url}/metrics") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "unknown_endpoint"
    # Nothing behind it: the balancer's own answer is the contract's JSON error too.
    nobody = make_balancer([free_port(), free_port()])
    async with http.get(f"{nobody.url}/dropbox/v1/config", headers={"X-Request-Id": "lb-nobody"}) as resp:
        assert resp.status == 503 and resp.headers["X-Request-Id"] == "lb-nobody"
        assert (await resp.json())["error"]["code"] == "gateway_unavailable"
    # A shared link's token never reaches the log.
    token = "secret-link-token-0123456789"
    for path in (f"/s/{token}", f"/dropbox/v1/links/{token}"):
        async with http.get(balancer.url + path):
            pass
    assert token not in (balancer.state_dir / "access.log").read_text()


async def test_a_killed_gateway_costs_no_request(store, make_balancer, http, tmp_path):
    pair = start_gateways(store, tmp_path)
    try:
        balancer = make_balancer([g.port for g in pair])
        pair[0].process.kill()
        pair[0].process.wait()
        gets = await answers(http, "GET", f"{balancer.url}/dropbox/v1/config", 4)
        assert [status for status, _ in gets] == [200] * 4
        # A POST no gateway has seen is safe anywhere: refused connections are retried whatever the method.
        posts = await answers(http, "POST", f"{balancer.url}/dropbox/v1/users", 2, json={})
        assert [status for status, _ in posts] == [400, 400], posts
        assert all(body["error"]["code"] for _, body in posts)
        balancer.logged("POST", "/dropbox/v1/users", 2)  # its lines are written after the answers
        assert {address for entry in balancer.access_log() for address in upstreams(entry)} == {
            f"127.0.0.1:{pair[0].port}", f"127.0.0.1:{pair[1].port}"}  # tried, then skipped
    finally:
        stop_gateways(pair)


async def test_a_hung_gateway_gets_idempotent_calls_retried_elsewhere_and_posts_not(gateways, make_balancer, http):
    hung, healthy = gateways
    hung_address, healthy_address = f"127.0.0.1:{hung.port}", f"127.0.0.1:{healthy.port}"
    ports = [hung.port, healthy.port]
    hung.process.send_signal(signal.SIGSTOP)  # still accepts connections (the kernel does), never answers
    try:
        # GET: the request that went to the hung gateway times out there and is answered by the other.
        balancer = make_balancer(ports, read_timeout=READ_TIMEOUT)
        gets = await answers(http, "GET", f"{balancer.url}/dropbox/v1/config", 2)
        assert [status for status, _ in gets] == [200, 200]
        logged = balancer.logged("GET", "/dropbox/v1/config", 2)
        assert [hung_address, healthy_address] in [upstreams(entry) for entry in logged]

        # POST: the one the hung gateway received is not sent again; the client is told it may have happened.
        balancer = make_balancer(ports, read_timeout=READ_TIMEOUT)
        posts = await answers(http, "POST", f"{balancer.url}/dropbox/v1/users", 2, json={})
        assert sorted(status for status, _ in posts) == [400, 504], posts
        timed_out = next(body for status, body in posts if status == 504)
        assert timed_out["error"]["code"] == "gateway_timeout"
        post_upstreams = [upstreams(entry) for entry in balancer.logged("POST", "/dropbox/v1/users", 2)]
        assert sorted(post_upstreams) == sorted([[hung_address], [healthy_address]])

        # The store's events are safe to repeat: retried like a GET (here answered 401: no token).
        balancer = make_balancer(ports, read_timeout=READ_TIMEOUT)
        events = await answers(http, "POST", f"{balancer.url}/dropbox/v1/events", 2, json={"Records": []})
        assert [status for status, _ in events] == [401, 401], events
        logged = balancer.logged("POST", "/dropbox/v1/events", 2)
        assert [hung_address, healthy_address] in [upstreams(entry) for entry in logged]
    finally:
        hung.process.send_signal(signal.SIGCONT)



# --- slow clients (slowloris): tests/slowloris.py ----------------------------------------------------------------

async def test_a_client_holding_many_half_sent_requests_does_not_stop_another_clients(gateways, make_balancer):
    balancer = make_balancer([g.port for g in gateways])  # one worker, sized for the machine
    async with held_half_sent(balancer.port, HELD):
        answer = await request_from(balancer.port, "/healthz")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


async def test_half_sent_requests_are_closed_after_the_header_timeout(gateways, make_balancer):
    balancer = make_balancer([g.port for g in gateways], header_timeout="1s")
    async with held_half_sent(balancer.port, 20) as held:
        closed = await closed_by_the_server(held)
    assert all(not answer or answer.startswith(b"HTTP/1.1 408") for answer in closed), closed[:3]


async def test_a_change_wait_outlives_the_balancers_read_timeout(gateways, make_balancer, http):
    """A wait is held open by design (up to 120 s): the balancer's shorter read timeout is not its."""
    balancer = make_balancer([g.port for g in gateways], read_timeout="2s")
    signed_up = await Api(http, gateways[0].url).signup()  # not through the balancer: a slow hash is not a wait
    user = Api(http, balancer.url, signed_up.token)
    listed = await user.get("/dropbox/v1/changes")
    assert listed.status == 200
    answer = await user.get(f"/dropbox/v1/changes/wait?cursor={listed.body['cursor']}&timeout=4")
    assert answer.status == 200 and answer.body == {"changes": False}
    assert (await user.get("/dropbox/v1/changes")).status == 200  # other requests keep theirs
