"""Sessions (contract v1.1): log-out and password change end access tokens, on every gateway process at once.

Against the gateway in-process (tests/app_fixtures.py) on a real database; the
cross-process tests run ``python -m gateway`` twice on one database of each engine.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, UTC

import jwt
import pytest

from gateway.core.clock import parse_stamp
from gateway.core.sessions import CLOCK_SKEW_ALLOWANCE
from gateway.core.tokens import token_time
from tests.app_fixtures import app_gateway as gateway, make_app as make_gateway  # noqa: F401 - in-process
from tests.core_fixtures import new_user
from tests.harness import Api, upload

TOKENS = "/dropbox/v1/tokens"
CURRENT = "/dropbox/v1/tokens/current"
ME = "/dropbox/v1/users/me"
PASSWORD_PATH = "/dropbox/v1/users/me/password"
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a new and better one"
CHUNK = 5 * 1024 * 1024


async def log_in(api: Api, username: str, password: str = PASSWORD) -> Api:
    answer = await api.post(TOKENS, json={"username": username, "password": password})
    assert answer.status == 200, answer.body
    return api.as_user(answer.body["access_token"])


def assert_revoked(answer) -> None:
    assert answer.status == 401, answer.body
    assert answer.body["error"]["code"] == "token_revoked"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def change_password(api: Api, current: str, new: str):
    return await api.request("PUT", PASSWORD_PATH, json={"current_password": current, "new_password": new})


# -- log-out ----------------------------------------------------------------------------------


async def test_log_out_ends_that_token_and_no_other(api: Api):
    alice = await api.signup(password=PASSWORD)
    laptop = await log_in(api, alice.username)
    answer = await alice.delete(CURRENT)
    assert answer.status == 204 and answer.body is None
    assert_revoked(await alice.get(ME))
    assert_revoked(await alice.get("/dropbox/v1/files"))
    assert_revoked(await alice.delete(CURRENT))
    assert (await laptop.get(ME)).status == 200, "the user's other sessions go on"
    assert (await log_in(api, alice.username)).token != alice.token


async def test_log_out_needs_a_valid_token(api: Api):
    assert (await api.delete(CURRENT)).body["error"]["code"] == "missing_token"
    assert (await api.delete(CURRENT, token="not-a-token")).body["error"]["code"] == "invalid_token"
    wrong_method = await api.get(CURRENT)
    assert wrong_method.status == 405 and wrong_method.headers["Allow"] == "DELETE"


# -- renewal: a session in use goes on ----------------------------------------------------------

RENEW = "/dropbox/v1/tokens/current/renew"


def claims_of(token: str | None) -> dict:
    return jwt.decode(token or "", options={"verify_signature": False})


async def test_a_token_in_use_is_renewed_within_its_session(api: Api):
    alice = await api.signup(password=PASSWORD)
    answer = await alice.post(RENEW)
    assert answer.status == 200, answer.body
    assert answer.body["token_type"] == "Bearer" and answer.body["expires_in"] == 3600
    renewed = alice.as_user(answer.body["access_token"])
    first, second = claims_of(alice.token), claims_of(renewed.token)
    assert second["jti"] != first["jti"] and second["sid"] == first["sid"] == first["jti"]
    assert second["sat"] == first["sat"] and second["exp"] >= first["exp"]
    # The token renewed goes on working until it expires (a request on its way, another tab holding it).
    assert (await alice.get(ME)).status == 200 and (await renewed.get(ME)).status == 200
    assert (await (renewed.as_user((await renewed.post(RENEW)).body["access_token"])).get(ME)).status == 200


async def test_log_out_ends_every_token_of_the_session_and_only_that_session(api: Api):
    alice = await api.signup(password=PASSWORD)
    renewed = alice.as_user((await alice.post(RENEW)).body["access_token"])
    laptop = await log_in(api, alice.username)
    assert (await renewed.delete(CURRENT)).status == 204
    for token in (alice, renewed):
        assert_revoked(await token.get(ME))
        assert_revoked(await token.post(RENEW))
    assert (await laptop.get(ME)).status == 200
    assert (await laptop.post(RENEW)).status == 200


async def test_a_password_change_ends_renewed_tokens_too(api: Api):
    alice = await api.signup(password=PASSWORD)
    renewed = alice.as_user((await alice.post(RENEW)).body["access_token"])
    assert (await change_password(alice, PASSWORD, NEW_PASSWORD)).status == 204
    assert_revoked(await renewed.get(ME))
    assert_revoked(await renewed.post(RENEW))


async def test_renewal_needs_a_live_token_and_ends_with_the_session(api: Api, gateway):
    alice = await api.signup(password=PASSWORD)
    assert (await api.post(RENEW)).body["error"]["code"] == "missing_token"
    assert (await api.post(RENEW, token="not-a-token")).body["error"]["code"] == "invalid_token"
    now = token_time()
    base = {"sub": str(alice.user_id), "username": alice.username, "iss": "dropbox-gateway", "gen": 0,
            "jti": "a-token-of-an-old-session", "sid": "an-old-session"}
    expired = {**base, "iat": now - 100, "exp": now - 10, "sat": now - 100}
    too_old = {**base, "iat": now - 10, "exp": now + 600, "sat": now - gateway.config.session_max_age}
    answer = await api.post(RENEW, token=jwt.encode(expired, gateway.config.jwt_secret, algorithm="HS256"))
    assert answer.status == 401 and answer.body["error"]["code"] == "token_expired"
    old = jwt.encode(too_old, gateway.config.jwt_secret, algorithm="HS256")
    answer = await api.post(RENEW, token=old)
    assert answer.status == 401 and answer.body["error"]["code"] == "session_expired"
    assert (await api.get(ME, token=old)).status == 200, "the token itself lives out its own expiry"
    # A renewal near the session's end gives a token that ends with it.
    nearly = {**too_old, "sat": now - gateway.config.session_max_age + 60}
    answer = await api.post(RENEW, token=jwt.encode(nearly, gateway.config.jwt_secret, algorithm="HS256"))
    assert answer.status == 200 and 0 < answer.body["expires_in"] <= 60
    assert claims_of(answer.body["access_token"])["exp"] <= nearly["sat"] + gateway.config.session_max_age


async def test_a_token_from_before_sessions_is_its_own_session(api: Api, gateway):
    alice = await api.signup(password=PASSWORD)
    now = token_time()
    legacy = jwt.encode({"sub": str(alice.user_id), "username": alice.username, "iss": "dropbox-gateway", "gen": 0,
                         "jti": "a-legacy-token", "iat": now, "exp": now + 600}, gateway.config.jwt_secret,
                        algorithm="HS256")
    renewed = (await api.post(RENEW, token=legacy)).body["access_token"]
    assert claims_of(renewed)["sid"] == "a-legacy-token"
    assert (await api.delete(CURRENT, token=renewed)).status == 204
    assert_revoked(await api.get(ME, token=legacy))
    assert (await alice.get(ME)).status == 200


# -- password change --------------------------------------------------------------------------


async def test_a_password_change_ends_every_earlier_token(api: Api):
    alice = await api.signup(password=PASSWORD)
    phone = await log_in(api, alice.username)
    answer = await change_password(alice, PASSWORD, NEW_PASSWORD)
    assert answer.status == 204 and answer.body is None
    for session in (alice, phone):
        assert_revoked(await session.get(ME))
    old = await api.post(TOKENS, json={"username": alice.username, "password": PASSWORD})
    assert old.status == 401 and old.body["error"]["code"] == "invalid_credentials"
    fresh = await log_in(api, alice.username, NEW_PASSWORD)
    assert (await fresh.get(ME)).body["username"] == alice.username
    # And again: each change ends the tokens of the one before.
    assert (await change_password(fresh, NEW_PASSWORD, PASSWORD)).status == 204
    assert_revoked(await fresh.get(ME))
    assert (await (await log_in(api, alice.username)).get(ME)).status == 200


async def test_a_wrong_current_password_is_403_and_changes_nothing(api: Api):
    alice = await api.signup(password=PASSWORD)
    answer = await change_password(alice, "not my password", NEW_PASSWORD)
    assert answer.status == 403
    assert answer.body["error"]["code"] == "wrong_password" and answer.body["error"]["field"] == "current_password"
    assert (await alice.get(ME)).status == 200
    await log_in(api, alice.username, PASSWORD)


async def test_a_weak_or_missing_new_password_is_400_and_changes_nothing(api: Api):
    alice = await api.signup(password=PASSWORD)
    cases = {
        "new_password": {"current_password": PASSWORD, "new_password": "short"},
        "current_password": {"new_password": NEW_PASSWORD},
    }
    for field, body in cases.items():
        answer = await alice.request("PUT", PASSWORD_PATH, json=body)
        assert answer.status == 400, body
        assert answer.body["error"]["code"] == "invalid_field" and answer.body["error"]["field"] == field
    too_long = await change_password(alice, PASSWORD, "x" * 1025)
    assert too_long.status == 400 and too_long.body["error"]["field"] == "new_password"
    not_json = await alice.request("PUT", PASSWORD_PATH, data=b"current_password=x")
    assert not_json.status == 400 and not_json.body["error"]["code"] == "invalid_json"
    assert (await alice.get(ME)).status == 200
    await log_in(api, alice.username, PASSWORD)


async def test_wrong_current_passwords_are_throttled_like_logins(make_gateway, http):
    gateway = await make_gateway(login_failures=3)
    api = Api(http, gateway.url)
    alice = await api.signup(password=PASSWORD)
    for _ in range(3):
        assert (await change_password(alice, "a guess at it", NEW_PASSWORD)).status == 403
    throttled = await change_password(alice, PASSWORD, NEW_PASSWORD)
    assert throttled.status == 429 and throttled.body["error"]["code"] == "too_many_attempts"
    assert int(throttled.headers["Retry-After"]) >= 1
    # The same guesses at the same password: the login is throttled too.
    login = await api.post(TOKENS, json={"username": alice.username, "password": PASSWORD})
    assert login.status == 429
    assert (await alice.get(ME)).status == 200, "nothing was changed"


# -- several gateway processes -----------------------------------------------------------------


@pytest.mark.every_engine  # token state shared through the database
async def test_log_out_on_one_gateway_process_ends_the_token_on_another(make_gateway_process, http, redis_url):
    """Two ``python -m gateway`` processes on one database and one shared permission cache."""
    first = await make_gateway_process(chunk_size=CHUNK, cache_url=redis_url)
    second = await make_gateway_process(chunk_size=CHUNK, cache_url=redis_url)
    alice = await Api(http, first.url).signup(password=PASSWORD)
    file = await upload(alice, os.urandom(100), CHUNK)
    on_second = Api(http, second.url, alice.token)
    for _ in range(2):  # the token works there, and the file's permissions are in the shared cache
        assert (await on_second.get(f"/dropbox/v1/files/{file['file_id']}")).status == 200
    assert (await alice.delete(CURRENT)).status == 204
    assert_revoked(await on_second.get(f"/dropbox/v1/files/{file['file_id']}"))
    assert_revoked(await on_second.get(f"/dropbox/v1/files/{file['file_id']}/content"))
    assert_revoked(await on_second.get(ME))


@pytest.mark.every_engine  # token state shared through the database
async def test_a_password_change_on_one_gateway_process_ends_the_tokens_on_another(make_gateway_process, http,
                                                                                    redis_url):
    first = await make_gateway_process(cache_url=redis_url)
    second = await make_gateway_process(cache_url=redis_url)
    alice = await Api(http, first.url).signup(password=PASSWORD)
    on_second = Api(http, second.url, alice.token)
    for api in (alice, on_second, alice):  # the token's state is cached by now
        assert (await api.get(ME)).status == 200
    assert (await change_password(on_second, PASSWORD, NEW_PASSWORD)).status == 204
    assert_revoked(await alice.get(ME))
    assert (await (await log_in(Api(http, first.url), alice.username, NEW_PASSWORD)).get(ME)).status == 200


# -- housekeeping -------------------------------------------------------------------------------


async def test_revocations_are_kept_until_their_tokens_have_long_expired(core, clock):
    await new_user(core, "alice")
    token = await core.accounts.log_in("alice", "correct horse battery")
    user = await core.sessions.authenticate(token.token)
    await core.sessions.log_out(user)
    # Kept until the last token its session may have (one renewed at the log-out) has expired.
    expiry = parse_stamp(await core.db.fetchval("SELECT expires_at FROM revoked_tokens"))
    assert datetime.fromtimestamp(user.expires_at, UTC) <= expiry
    assert expiry <= datetime.fromtimestamp(token_time() + core.config.token_ttl, UTC)
    clock.now = expiry + timedelta(seconds=CLOCK_SKEW_ALLOWANCE - 1)
    assert (await core.housekeeping())["revoked_tokens"] == 0
    clock.now = expiry + timedelta(seconds=CLOCK_SKEW_ALLOWANCE + 1)
    assert (await core.housekeeping())["revoked_tokens"] == 1
    assert await core.db.fetchval("SELECT count(*) FROM revoked_tokens") == 0


async def test_the_token_state_is_cached_and_dropped_on_every_change(make_gateway, http, redis_url):
    """Per request the token check reads the shared cache, not the database; each change drops the entry."""
    gateway = await make_gateway(cache_url=redis_url)
    alice = await Api(http, gateway.url).signup(password=PASSWORD)
    cache = gateway.core.sessions.cache
    key = f"tokens:{alice.user_id}"
    assert (await alice.get(ME)).status == 200
    entry = await cache.get(key)
    assert entry["gen"] == 0 and entry["revoked"] == []
    phone = await log_in(Api(http, gateway.url), alice.username)
    assert (await phone.delete(CURRENT)).status == 204
    assert await cache.get(key) is None, "a log-out drops the entry"
    assert_revoked(await phone.get(ME))
    assert len((await cache.get(key))["revoked"]) == 1
    assert (await change_password(alice, PASSWORD, NEW_PASSWORD)).status == 204
    assert await cache.get(key) is None, "a password change drops the entry"
    assert_revoked(await alice.get(ME))
    assert (await cache.get(key))["gen"] == 1


def test_a_token_checked_before_still_expires_and_a_changed_one_is_still_refused(monkeypatch):
    """gateway/core/tokens.py remembers a token's whole check: its expiry is checked again every time,
    and any other string (one character changed) is checked whole."""
    from gateway.core import tokens
    from gateway.core.errors import InvalidToken, TokenExpired

    secret = "a-test-secret-" + "x" * 32
    token = tokens.issue_token(secret, 7, "alice", 0, ttl=60)
    assert tokens.verify_token(secret, token).user_id == 7
    assert tokens.verify_token(secret, token).user_id == 7  # remembered
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidToken):
        tokens.verify_token(secret, tampered)
    with pytest.raises(InvalidToken):
        tokens.verify_token("another-secret-" + "y" * 32, token)
    later = token_time() + 60
    monkeypatch.setattr(tokens, "token_time", lambda: later)
    with pytest.raises(TokenExpired):
        tokens.verify_token(secret, token)
