"""Users and tokens: the gateway in-process (tests/app_fixtures.py) on a real SQLite file."""
from __future__ import annotations

import base64
import json
import time

import jwt

from tests.app_fixtures import app_gateway as gateway  # noqa: F401 - the gateway in-process
from tests.harness import Api, make_claim


async def test_signup_login_and_me(api: Api):
    alice = await api.signup("alice")
    me = await alice.get("/dropbox/v1/users/me")
    assert me.status == 200
    assert me.body == {"user_id": alice.user_id, "username": "alice", "email": "alice@example.com",
                       "quota_bytes": 100 * 1024**3, "used_bytes": 0}
    assert me.headers["X-Request-Id"]


async def test_duplicate_username_is_409(api: Api):
    await api.signup("bob")
    again = await api.post("/dropbox/v1/users", json={"username": "BOB", "email": "b@example.com", "password": "another password"})
    assert again.status == 409
    assert again.body["error"]["code"] == "username_taken"
    assert "bob" in again.body["error"]["message"].lower()


async def test_wrong_password_and_unknown_user_are_401(api: Api):
    await api.signup("carol", password="the right password")
    wrong = await api.post("/dropbox/v1/tokens", json={"username": "carol", "password": "the wrong password"})
    unknown = await api.post("/dropbox/v1/tokens", json={"username": "nobody", "password": "whatever123"})
    for response in (wrong, unknown):
        assert response.status == 401
        assert response.body["error"]["code"] == "invalid_credentials"


async def test_malformed_json_is_400_with_error_body(api: Api):
    response = await api.post("/dropbox/v1/users", data=b'{"username": "dave",', headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert response.body["error"]["code"] == "invalid_json"
    assert response.body["error"]["message"]
    not_object = await api.post("/dropbox/v1/users", json=["a", "list"])
    assert not_object.status == 400 and not_object.body["error"]["code"] == "invalid_json"


async def test_invalid_fields_are_named(api: Api):
    cases = {
        "username": {"username": "x", "email": "x@example.com", "password": "long enough"},
        "email": {"username": "erin", "email": "not-an-email", "password": "long enough"},
        "password": {"username": "erin", "email": "erin@example.com", "password": "short"},
    }
    for field, body in cases.items():
        response = await api.post("/dropbox/v1/users", json=body)
        assert response.status == 400, field
        assert response.body["error"]["field"] == field
        assert field in response.body["error"]["message"]


async def test_missing_token_is_401(api: Api):
    response = await api.get("/dropbox/v1/users/me")
    assert response.status == 401
    assert response.body["error"]["code"] == "missing_token"


async def test_expired_token_is_401(api: Api, gateway):
    user = await api.signup("frank")
    now = int(time.time())
    expired = jwt.encode(
        {"sub": str(user.user_id), "username": "frank", "iat": now - 100, "exp": now - 10, "iss": "dropbox-gateway",
         "jti": "an-old-token", "gen": 0},
        gateway.config.jwt_secret,
        algorithm="HS256",
    )
    response = await api.get("/dropbox/v1/users/me", token=expired)
    assert response.status == 401
    assert response.body["error"]["code"] == "token_expired"


async def test_tampered_token_is_401(api: Api):
    user = await api.signup("grace")
    header, payload, signature = user.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = str(int(claims["sub"]) + 1)
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for token in (f"{header}.{forged_payload}.{signature}", user.token[:-2] + ("AA" if not user.token.endswith("AA") else "BB")):
        response = await api.get("/dropbox/v1/users/me", token=token)
        assert response.status == 401
        assert response.body["error"]["code"] == "invalid_token"


async def test_alg_none_and_other_algorithms_are_401(api: Api, gateway):
    user = await api.signup("heidi")
    now = int(time.time())
    claims = {"sub": str(user.user_id), "username": "heidi", "iat": now, "exp": now + 600, "iss": "dropbox-gateway",
              "jti": "a-forged-token", "gen": 0}
    unsigned = jwt.encode(claims, None, algorithm="none")
    hs512 = jwt.encode(claims, gateway.config.jwt_secret, algorithm="HS512")
    for token in (unsigned, hs512):
        response = await api.get("/dropbox/v1/users/me", token=token)
        assert response.status == 401, token
        assert response.body["error"]["code"] == "invalid_token"


async def test_users_survive_a_gateway_restart(api: Api, gateway):
    await api.signup("ivan", password="survives restarts")
    await gateway.restart()
    login = await api.post("/dropbox/v1/tokens", json={"username": "ivan", "password": "survives restarts"})
    assert login.status == 200
    me = await api.get("/dropbox/v1/users/me", token=login.body["access_token"])
    assert me.body["username"] == "ivan"


async def test_text_no_database_can_hold_is_refused_or_unknown_never_a_500(api: Api):
    """NUL (PostgreSQL refuses it) and lone surrogates (not UTF-8): found by schemathesis on PostgreSQL."""
    alice = await api.signup("nina", password="a fine password")
    chunk_size = (await api.get("/dropbox/v1/config")).body["chunk_size"]
    file = await alice.post("/dropbox/v1/files", json=make_claim(b"", chunk_size))
    for name in ("ni\x00na", "\ud800"):
        login = await api.post("/dropbox/v1/tokens", json={"username": name, "password": "a fine password"})
        assert login.status == 401 and login.body["error"]["code"] == "invalid_credentials", login.body
        shared = await alice.post("/dropbox/v1/files/share", json={"file_id": file.body["file_id"], "users": [name]})
        assert shared.status == 404 and shared.body["error"]["code"] == "unknown_users", shared.body
        lookup = await alice.post("/dropbox/v1/files/share", json={"file_id": name, "users": ["nina"]})
        assert lookup.status == 404, lookup.body
        signup = await api.post("/dropbox/v1/users", json={"username": "olga", "email": f"o{name}@example.com",
                                                           "password": "a fine password"})
        assert signup.status == 400 and signup.body["error"]["field"] == "email", signup.body
    unshare = await alice.delete(f"/dropbox/v1/files/{file.body['file_id']}/shares/ni%00na")
    assert unshare.status == 404, unshare.body
    odd_password = await api.post("/dropbox/v1/tokens", json={"username": "nina", "password": "\ud800"})
    assert odd_password.status == 401
