"""Login throttling (contract v1.1) against the gateway in-process and a real database of each engine.

Per username: after ``login_failures`` wrong passwords, 429 ``too_many_attempts``
with Retry-After, the right password too, unknown usernames alike. Per client
address: slowed down, never refused. The counters live in the database, so a
second gateway on it throttles the same.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from storage.embedded import free_port
from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - the gateway in-process, its clock moved by the tests
from tests.harness import Api

TOKENS = "/dropbox/v1/tokens"
PASSWORD = "correct horse battery"
FAILURES = 3


def credentials(username: str, password: str) -> dict:
    return {"username": username, "password": password}


async def assert_throttled(api: Api, username: str, password: str, window: int) -> None:
    answer = await api.post(TOKENS, json=credentials(username, password))
    assert answer.status == 429, answer.body
    assert answer.body["error"]["code"] == "too_many_attempts"
    assert answer.body["error"]["message"]
    assert answer.headers["Content-Type"].startswith("application/json") and answer.headers["X-Request-Id"]
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= window and answer.body["error"]["retry_after"] == retry_after


async def test_wrong_passwords_for_a_username_throttle_it_even_with_the_right_password(make_gateway, http):
    gateway = await make_gateway(login_failures=FAILURES, login_window=2)
    api = Api(http, gateway.url)
    alice = await api.signup(password=PASSWORD)
    bob = await api.signup(password=PASSWORD)
    for _ in range(FAILURES):
        wrong = await api.post(TOKENS, json=credentials(alice.username, "not the password"))
        assert wrong.status == 401 and wrong.body["error"]["code"] == "invalid_credentials"
    await assert_throttled(api, alice.username, PASSWORD, window=2)
    await assert_throttled(api, alice.username.upper(), PASSWORD, window=2)  # the same username, whatever its case
    assert (await api.post(TOKENS, json=credentials(bob.username, PASSWORD))).status == 200, "others log in"
    assert (await alice.get("/dropbox/v1/users/me")).status == 200, "tokens issued before keep working"
    gateway.clock.advance(2.1)  # the window passes
    assert (await api.post(TOKENS, json=credentials(alice.username, PASSWORD))).status == 200


async def test_a_right_password_starts_the_count_again(make_gateway, http):
    gateway = await make_gateway(login_failures=FAILURES)
    api = Api(http, gateway.url)
    alice = await api.signup(password=PASSWORD)
    for _ in range(3):
        for _ in range(FAILURES - 1):
            assert (await api.post(TOKENS, json=credentials(alice.username, "wrong password"))).status == 401
        assert (await api.post(TOKENS, json=credentials(alice.username, PASSWORD))).status == 200


async def test_unknown_usernames_are_throttled_the_same_way(make_gateway, http):
    gateway = await make_gateway(login_failures=FAILURES)
    api = Api(http, gateway.url)
    alice = await api.signup(password=PASSWORD)

    async def answers(username: str) -> list[tuple[int, str, bool]]:
        seen = []
        for _ in range(FAILURES + 2):
            answer = await api.post(TOKENS, json=credentials(username, "a wrong password"))
            seen.append((answer.status, answer.body["error"]["code"], "Retry-After" in answer.headers))
        return seen

    known, unknown = await answers(alice.username), await answers("nobody-by-this-name")
    assert known == unknown == [(401, "invalid_credentials", False)] * FAILURES + [(429, "too_many_attempts", True)] * 2


@pytest.mark.every_engine  # concurrent transactions
async def test_concurrent_guesses_cannot_outrun_the_count(make_gateway, http):
    gateway = await make_gateway(login_failures=FAILURES)
    api = Api(http, gateway.url)
    alice = await api.signup(password=PASSWORD)
    guesses = [api.post(TOKENS, json=credentials(alice.username, f"guess {n}")) for n in range(12)]
    statuses = sorted(answer.status for answer in await asyncio.gather(*guesses))
    assert statuses == [401] * FAILURES + [429] * (12 - FAILURES)


@pytest.mark.every_engine  # counters shared through the database
async def test_the_counts_hold_across_gateways_on_one_database(make_gateway, http):
    first = await make_gateway(login_failures=FAILURES)
    second = await make_gateway(login_failures=FAILURES, port=free_port())
    on_first, on_second = Api(http, first.url), Api(http, second.url)
    alice = await on_first.signup(password=PASSWORD)
    for api in (on_first, on_second, on_first):
        assert (await api.post(TOKENS, json=credentials(alice.username, "wrong password"))).status == 401
    await assert_throttled(on_second, alice.username, PASSWORD, window=300)
    await assert_throttled(on_first, alice.username, PASSWORD, window=300)


async def test_an_address_failing_on_many_usernames_is_slowed_down_but_never_refused(make_gateway, http):
    delay = 0.6
    gateway = await make_gateway(login_address_failures=4, login_address_delay=delay)
    api = Api(http, gateway.url)
    users = [await api.signup(password=PASSWORD) for _ in range(2)]
    # Spraying one password over many usernames: one failure each, never enough to throttle a username.
    for n in range(5):
        assert (await api.post(TOKENS, json=credentials(f"sprayed-{n}", "password1"))).status == 401
    for user in users:  # people behind the same address still log in...
        started = time.monotonic()
        assert (await api.post(TOKENS, json=credentials(user.username, PASSWORD))).status == 200
        assert time.monotonic() - started >= delay  # ...after waiting
    started = time.monotonic()
    assert (await api.post(TOKENS, json=credentials("sprayed-9", "password1"))).status == 401
    assert time.monotonic() - started >= delay


async def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(make_gateway, http):
    async def failure_keys(gateway, forwarded_for: str) -> set[str]:
        api = Api(http, gateway.url)
        answer = await api.post(TOKENS, json=credentials("someone", "wrong password"),
                                headers={"X-Forwarded-For": forwarded_for})
        assert answer.status == 401
        rows = await gateway.core.db.fetchall("SELECT key FROM throttle WHERE key LIKE 'login-address:%'")
        return {row["key"] for row in rows}

    direct = await make_gateway()
    assert await failure_keys(direct, "203.0.113.7") == {"login-address:127.0.0.1"}, "a client cannot pick its address"
    proxied = await make_gateway(trusted_proxies="127.0.0.1, 10.0.0.0/8", port=free_port())
    await proxied.core.db.execute("DELETE FROM throttle")
    # The client wrote the first entry; the trusted proxies appended the rest.
    assert await failure_keys(proxied, "198.51.100.1, 2001:db8::1, 10.1.2.3") == {"login-address:2001:db8::/64"}


def test_the_client_address_from_x_forwarded_for():
    from aiohttp.test_utils import make_mocked_request

    from gateway.config import Config
    from gateway.http.client_address import client_address

    def address(peer: str, forwarded: list[str], trusted: str) -> str:
        headers = [("X-Forwarded-For", value) for value in forwarded]
        request = make_mocked_request("POST", TOKENS, headers=headers)
        request._transport_peername = (peer, 40000)  # noqa: SLF001 - what aiohttp reads request.remote from
        return client_address(request, Config(trusted_proxies=trusted).trusted_proxy_networks)

    assert address("192.0.2.1", ["203.0.113.7"], "") == "192.0.2.1"
    assert address("192.0.2.1", ["203.0.113.7"], "10.0.0.0/8") == "192.0.2.1", "an untrusted peer's header is ignored"
    assert address("10.0.0.2", ["203.0.113.7"], "10.0.0.0/8") == "203.0.113.7"
    assert address("10.0.0.2", ["1.1.1.1, 203.0.113.7", "10.9.9.9"], "10.0.0.0/8") == "203.0.113.7"
    assert address("10.0.0.2", [], "10.0.0.0/8") == "10.0.0.2", "no header: the proxy itself"
    assert address("10.0.0.2", ["203.0.113.7, not-an-address, 10.0.0.5"], "10.0.0.0/8") == "10.0.0.5"
    assert address("::ffff:10.0.0.2", ["::ffff:203.0.113.7"], "10.0.0.0/8") == "203.0.113.7"
    assert address("::1", ["2001:db8::7"], "::1") == "2001:db8::7"


def test_bad_trusted_proxies_fail_at_start():
    import pytest

    from gateway.config import Config, ConfigError

    with pytest.raises(ConfigError, match="GATEWAY_TRUSTED_PROXIES"):
        Config.from_env({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, nginx"}, s3_secret_key="s", jwt_secret="j" * 32,
                        events_token="e", cdn_secret="c")


def from_address(address: str) -> dict:
    """Headers that make a request come from ``address`` for a gateway that trusts the loopback as its proxy."""
    return {"X-Forwarded-For": address}


async def test_an_address_guessing_faster_than_its_rate_is_refused_for_a_minute_and_no_other(make_gateway, http):
    gateway = await make_gateway(login_address_rate=5, trusted_proxies="127.0.0.1")
    api = Api(http, gateway.url)
    alice = await api.signup(password=PASSWORD)
    guesser, neighbour = from_address("198.51.100.7"), from_address("203.0.113.9")
    for n in range(5):  # one guess per username: never enough for the per-username limit
        answer = await api.post(TOKENS, json=credentials(f"victim-{n}", "password1"), headers=guesser)
        assert answer.status == 401, answer.body
    refused = await api.post(TOKENS, json=credentials("victim-9", "password1"), headers=guesser)
    assert refused.status == 429 and refused.body["error"]["code"] == "too_many_attempts"
    assert "this address" in refused.body["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Nothing tells the right password from a guess before checking it, which is the guess itself.
    assert (await api.post(TOKENS, json=credentials(alice.username, PASSWORD), headers=guesser)).status == 429
    assert (await api.post(TOKENS, json=credentials(alice.username, PASSWORD), headers=neighbour)).status == 200
    assert (await api.post(TOKENS, json=credentials("victim-9", "password1"), headers=neighbour)).status == 401
    gateway.clock.advance(61)
    assert (await api.post(TOKENS, json=credentials(alice.username, PASSWORD), headers=guesser)).status == 200


async def test_right_passwords_spend_nothing_of_the_addresss_rate(make_gateway, http):
    """An office behind one NAT address: its people logging in all day never come near the limit."""
    gateway = await make_gateway(login_address_rate=3)
    api = Api(http, gateway.url)
    people = [await api.signup(password=PASSWORD) for _ in range(3)]
    for _ in range(4):
        for person in people:
            assert (await api.post(TOKENS, json=credentials(person.username, PASSWORD))).status == 200
    for n in range(3):
        assert (await api.post(TOKENS, json=credentials(people[n].username, "a typo"))).status == 401
    assert (await api.post(TOKENS, json=credentials(people[0].username, "a typo"))).status == 429


@pytest.mark.every_engine  # concurrent transactions
async def test_concurrent_guesses_from_one_address_cannot_outrun_its_rate(make_gateway, http):
    """The review's attack: many connections from one address guessing at once, on many usernames."""
    gateway = await make_gateway(login_address_rate=5)
    api = Api(http, gateway.url)
    guesses = [api.post(TOKENS, json=credentials(f"someone-{n}", "password1")) for n in range(20)]
    statuses = sorted(answer.status for answer in await asyncio.gather(*guesses))
    assert statuses == [401] * 5 + [429] * 15
    gateway.clock.advance(61)
    assert (await api.post(TOKENS, json=credentials("someone-0", "password1"))).status == 401
