"""Password hashes: scrypt at its real cost (other tests of this process hash at a lower one: conftest.py)."""
from __future__ import annotations

import pytest

from gateway.core.passwords import hash_password, verify_password

pytestmark = pytest.mark.real_password_cost


async def test_a_password_is_hashed_with_scrypt_at_its_real_cost_and_salted():
    first, second = await hash_password("correct horse"), await hash_password("correct horse")
    assert first.split("$")[:4] == ["scrypt", str(2**14), "8", "1"]
    assert first != second  # salted
    assert await verify_password("correct horse", first)
    assert not await verify_password("correct horsE", first)


async def test_a_hash_made_at_another_cost_still_verifies():
    """Its parameters travel with it: a hash made at the tests' cost (or an older one) is checked at its own."""
    from gateway.core import passwords

    stored = await hash_password("battery staple")
    original = passwords.N
    try:
        passwords.N = 2**10
        assert await verify_password("battery staple", stored)
        cheaper = await hash_password("battery staple")
    finally:
        passwords.N = original
    assert cheaper.split("$")[1] == str(2**10) and await verify_password("battery staple", cheaper)


async def test_no_user_and_no_password_never_verify():
    assert not await verify_password("anything", None)
    assert not await verify_password("anything", "not a hash")


async def test_an_unknown_name_is_checked_at_the_cost_of_a_users_hash(monkeypatch):
    """The dummy hash an unknown name is checked against costs what a user's costs, whatever the cost is now."""
    from gateway.core import passwords

    costs = []
    real = passwords._scrypt
    monkeypatch.setattr(passwords, "_scrypt", lambda *args: costs.append(args[2:]) or real(*args))
    assert not await verify_password("anything", None)
    assert costs[-1] == (2**14, 8, 1)
    monkeypatch.setattr(passwords, "N", 2**10)
    assert not await verify_password("anything", None)
    assert costs[-1] == (2**10, 8, 1)
