"""Who may sign up (GATEWAY_SIGNUP: open, invite, closed) and how fast from one address, in-process.

Contract: POST /dropbox/v1/users answers 201, 409 taken, 400 invalid. Where it
is silent, the refusals are the contract's error JSON with codes of their own:
403 ``signup_closed``, ``invitation_required``, ``invalid_invitation``, and
429 ``too_many_requests`` (with Retry-After) past the per-address rate.
"""
from __future__ import annotations

import asyncio

import pytest

from gateway.core.accounts import SIGNUP_WINDOW
from gateway.core.admin import Admin
from gateway.core.limits import Limits
from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - the gateway in-process, its clock moved by the tests
from tests.core_fixtures import core_config
from tests.harness import Api

USERS = "/dropbox/v1/users"


def new_user(name: str, **extra: str) -> dict:
    return {"username": name, "email": f"{name}@example.com", "password": "correct horse battery", **extra}


def admin_of(gateway) -> Admin:
    core = gateway.core
    return Admin(core.config, core.db, core.clock, core.accounts, core.sessions, Limits(core.config, core.db))


async def assert_refused(api: Api, body: dict, status: int, code: str, **headers: str) -> None:
    answer = await api.post(USERS, json=body, headers=headers or None)
    assert answer.status == status and answer.body["error"]["code"] == code, answer.body
    assert answer.body["error"]["message"]


@pytest.mark.parametrize("mode", ["open", "invite", "closed"])
async def test_the_config_tells_clients_who_may_sign_up(make_gateway, http, mode):
    gateway = await make_gateway(signup=mode)
    answer = await Api(http, gateway.url).get("/dropbox/v1/config")
    assert answer.status == 200 and answer.body["signup"] == mode


async def test_closed_sign_up_refuses_everyone_and_the_admin_still_creates_accounts(make_gateway, http):
    gateway = await make_gateway(signup="closed")
    api = Api(http, gateway.url)
    await assert_refused(api, new_user("walk-in"), 403, "signup_closed")
    await admin_of(gateway).create_user("staff", "staff@example.com", "correct horse battery")
    await assert_refused(api, new_user("staff"), 403, "signup_closed")  # nor does it tell which names exist
    assert (await api.post("/dropbox/v1/tokens", json={"username": "staff", "password": "correct horse battery"})).status == 200


async def test_invitation_only_sign_up_takes_each_code_once_and_until_it_expires(make_gateway, http):
    gateway = await make_gateway(signup="invite")
    api = Api(http, gateway.url)
    admin = admin_of(gateway)
    await assert_refused(api, new_user("uninvited"), 403, "invitation_required")
    await assert_refused(api, new_user("guesser", invitation="not-a-code"), 403, "invalid_invitation")
    code = (await admin.invite(expires_in=3600)).code
    created = await api.post(USERS, json=new_user("invited", invitation=code))
    assert created.status == 201 and created.body["username"] == "invited"
    await assert_refused(api, new_user("second", invitation=code), 403, "invalid_invitation")

    late = (await admin.invite(expires_in=60)).code
    gateway.clock.advance(61)
    await assert_refused(api, new_user("late", invitation=late), 403, "invalid_invitation")
    rows = await gateway.core.db.fetchall("SELECT code_hash FROM invitations")
    assert code not in {row["code_hash"] for row in rows}, "only the code's hash is kept"


async def test_a_sign_up_that_fails_leaves_its_invitation_unused(make_gateway, http):
    gateway = await make_gateway(signup="invite")
    api = Api(http, gateway.url)
    admin = admin_of(gateway)
    await api.post(USERS, json=new_user("taken", invitation=(await admin.invite(3600)).code))
    code = (await admin.invite(3600)).code
    await assert_refused(api, new_user("TAKEN", invitation=code), 409, "username_taken")
    assert (await api.post(USERS, json=new_user("free", invitation=code))).status == 201


@pytest.mark.every_engine  # concurrent transactions
async def test_one_invitation_signs_up_one_user_however_many_try_at_once(make_gateway, http):
    gateway = await make_gateway(signup="invite")
    api = Api(http, gateway.url)
    code = (await admin_of(gateway).invite(3600)).code
    answers = await asyncio.gather(*(api.post(USERS, json=new_user(f"racer-{n}", invitation=code)) for n in range(6)))
    assert sorted(answer.status for answer in answers) == [201] + [403] * 5


async def test_open_sign_up_from_one_address_is_limited_per_hour_and_taken_names_count(make_gateway, http):
    gateway = await make_gateway(signup_rate=3, trusted_proxies="127.0.0.1")
    api = Api(http, gateway.url)
    office, elsewhere = {"X-Forwarded-For": "198.51.100.20"}, {"X-Forwarded-For": "203.0.113.30"}
    assert (await api.post(USERS, json=new_user("first"), headers=office)).status == 201
    await assert_refused(api, new_user("first"), 409, "username_taken", **office)  # enumerating costs the same
    assert (await api.post(USERS, json=new_user("second"), headers=office)).status == 201
    refused = await api.post(USERS, json=new_user("third"), headers=office)
    assert refused.status == 429 and refused.body["error"]["code"] == "too_many_requests", refused.body
    assert 1 <= int(refused.headers["Retry-After"]) <= SIGNUP_WINDOW
    # Past the limit, a taken name is not told either.
    await assert_refused(api, new_user("first"), 429, "too_many_requests", **office)
    assert (await api.post(USERS, json=new_user("third"), headers=elsewhere)).status == 201
    gateway.clock.advance(SIGNUP_WINDOW + 1)
    assert (await api.post(USERS, json=new_user("fourth"), headers=office)).status == 201


async def test_the_default_lets_a_schools_first_morning_sign_up_from_one_address(core, clock):
    """200 sign-ups in an hour from one NAT address, all let through by the default rate.

    Counted where the limit is kept (the hash of each password would make 200
    real sign-ups take long): the same counter POST /dropbox/v1/users uses."""
    assert core_config().signup_rate >= 200
    for minute in range(200):
        assert await core.accounts.sign_ups.count_attempt("192.0.2.1") is None, f"sign-up {minute} refused"
        clock.advance(15)  # 200 over 50 minutes


def test_the_sign_up_mode_is_checked_at_start():
    from gateway.config import Config, ConfigError

    for mode in ("open", "invite", "closed"):
        assert Config.from_env({"GATEWAY_SIGNUP": mode}, secrets=False).signup == mode
    with pytest.raises(ConfigError, match="GATEWAY_SIGNUP"):
        Config.from_env({"GATEWAY_SIGNUP": "invitation"}, secrets=False)
