"""Login throttling (contract v1.1) against the gateway in-process and a real database of each engine.

Per username: after ``login_failures`` wrong passwords, 429 ``too_many_attempts``
with Retry-After, the right password too, unknown usernames alike. Per client
address: past its failures its password checks are paced (a few slots, each
failed check holding one for the delay), never refused. The counters live in
the database, so a second gateway on it throttles the same; the pacing's
slots are each process's. Delays end when a test says (tests/core_fixtures.py's
Delays): the tests count checks made, not seconds.
"""
from __future__ import annotations

import asyncio

import pytest

from storage.embedded import free_port
from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - the gateway in-process, its clock moved by the tests
from tests.core_fixtures import Delays
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


def count_checks(monkeypatch) -> list[bool]:
    """The password checks the gateway makes from now on, each one's result (the guesses it answers)."""
    import gateway.core.accounts as accounts

    made: list[bool] = []
    verify = accounts.verify_password

    async def counted(password: str, stored: str | None) -> bool:
        made.append(await verify(password, stored))
        return made[-1]

    monkeypatch.setattr(accounts, "verify_password", counted)
    return made


async def paced_gateway(make_gateway, failures: int, checks: int) -> tuple[object, Delays]:
    """A gateway that paces an address past ``failures``, its delays ended by the test."""
    gateway = await make_gateway(login_address_failures=failures, login_address_checks=checks,
                                 trusted_proxies="127.0.0.1")
    delays = Delays()
    gateway.core.accounts.pacer.sleep = delays.sleep
    return gateway, delays


async def answered(tasks: list[asyncio.Task], count: int) -> None:
    """Wait until ``count`` of ``tasks`` are done."""
    while sum(task.done() for task in tasks) < count:
        await asyncio.wait([task for task in tasks if not task.done()], return_when=asyncio.FIRST_COMPLETED, timeout=60)


async def test_sixty_connections_guessing_from_one_address_get_its_slots_per_delay_and_a_right_password_gets_in(
        make_gateway, http, monkeypatch):
    """The review's attack: 60 concurrent connections from one address, one guess per username. Past the
    address's failures each wrong check holds one of its 2 slots for the delay: 2 guesses per delay (1 a
    second with the default 2 s) instead of 17.2 a second. Nothing is refused: a right password from the
    address waits its turn and gets in; another address is not held at all."""
    gateway, delays = await paced_gateway(make_gateway, failures=3, checks=2)
    api = Api(http, gateway.url)
    alice, bob = await api.signup(password=PASSWORD), await api.signup(password=PASSWORD)
    checks = count_checks(monkeypatch)
    guesser, neighbour = from_address("198.51.100.7"), from_address("203.0.113.9")
    for n in range(3):  # one guess per username: never enough for the per-username limit
        assert (await api.post(TOKENS, json=credentials(f"victim-{n}", "password1"), headers=guesser)).status == 401
    assert len(checks) == 3 and delays.begun == 0, "not paced yet"

    guesses = [asyncio.create_task(api.post(TOKENS, json=credentials(f"victim-{n}", "password1"), headers=guesser))
               for n in range(3, 63)]
    await delays.until_begun(2)
    # Both slots are held in their delay: the neighbour is not behind them, and is not paced.
    assert (await api.post(TOKENS, json=credentials(bob.username, PASSWORD), headers=neighbour)).status == 200
    assert (await api.post(TOKENS, json=credentials("victim-1", "password1"), headers=neighbour)).status == 401
    assert len(checks) == 3 + 2 + 2 and delays.begun == 2
    right = asyncio.create_task(api.post(TOKENS, json=credentials(alice.username, PASSWORD), headers=guesser))
    for delay in range(1, 31):
        await delays.until_begun(2 * delay)
        assert len(checks) == 3 + 2 * delay + 2, "2 guesses a delay, whatever the number of connections"
        assert sum(task.done() for task in guesses) == 2 * (delay - 1)
        delays.end()
    answer = await right
    assert answer.status == 200, "the right password, behind 60 guesses, is answered as soon as it is checked"
    assert all(task.result().status == 401 for task in guesses) and delays.begun == 60
    # Still paced (for the window), and never refused: a right password in no queue waits no delay.
    assert (await api.post(TOKENS, json=credentials(alice.username, PASSWORD), headers=guesser)).status == 200
    assert delays.begun == 60


async def test_right_passwords_count_nothing_against_the_address(make_gateway, http, monkeypatch):
    """An office behind one NAT address: its people logging in all day never make it paced."""
    gateway, delays = await paced_gateway(make_gateway, failures=3, checks=1)
    api = Api(http, gateway.url)
    people = [await api.signup(password=PASSWORD) for _ in range(3)]
    for _ in range(4):
        for person in people:
            assert (await api.post(TOKENS, json=credentials(person.username, PASSWORD))).status == 200
    for n in range(3):
        assert (await api.post(TOKENS, json=credentials(people[n].username, "a typo"))).status == 401
    assert delays.begun == 0
    typo = asyncio.create_task(api.post(TOKENS, json=credentials(people[0].username, "a typo")))
    await delays.until_begun(1)  # the 4th failure: paced
    delays.end()
    assert (await typo).status == 401
    gateway.clock.advance(301)  # the window after it has passed
    for n in range(3):
        assert (await api.post(TOKENS, json=credentials(people[n].username, "a typo"))).status == 401
    assert delays.begun == 1


@pytest.mark.every_engine  # concurrent transactions
async def test_concurrent_guesses_from_one_address_cannot_outrun_its_count(make_gateway, http, monkeypatch):
    """20 guesses at once: the address's first 5 are checked at once, every later one is paced."""
    gateway, delays = await paced_gateway(make_gateway, failures=5, checks=1)
    checks = count_checks(monkeypatch)
    api = Api(http, gateway.url)
    guesses = [asyncio.create_task(api.post(TOKENS, json=credentials(f"someone-{n}", "password1")))
               for n in range(20)]
    await answered(guesses, 5)
    await delays.until_begun(1)
    assert len(checks) == 6 and sum(task.done() for task in guesses) == 5
    for delay in range(2, 16):
        delays.end()
        await delays.until_begun(delay)
        assert len(checks) == 5 + delay
    delays.end()
    assert sorted(answer.status for answer in await asyncio.gather(*guesses)) == [401] * 20
    gateway.clock.advance(301)
    assert (await api.post(TOKENS, json=credentials("someone-0", "password1"))).status == 401
    assert delays.begun == 15, "the pacing ends with the window"
