"""Password hashing with scrypt (memory-hard, salted), run off the event loop."""
from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import os

# scrypt parameters (N=2^14, r=8, p=1): ~16 MiB and tens of milliseconds per hash.
N, R, P = 2**14, 8, 1


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # surrogatepass: any str a JSON body can carry hashes (a lone surrogate too) instead of failing.
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_password_sync(password: str, n: int | None = None) -> str:
    n = N if n is None else n
    salt = os.urandom(16)
    digest = _scrypt(password, salt, n, R, P)
    b64 = base64.b64encode
    return f"scrypt${n}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password_sync(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    return hmac.compare_digest(actual, base64.b64decode(digest))


@functools.cache
def dummy_hash(n: int) -> str:
    """A stored hash at cost ``n`` to check against when the user does not exist, so a login for an
    unknown name costs the same time as one with a wrong password. Made on first use (not at import:
    every process would pay a hash to start) and per cost, so it always costs what a user's does."""
    return hash_password_sync(os.urandom(8).hex(), n)


def _verify_sync(password: str, stored: str | None, n: int) -> bool:
    return verify_password_sync(password, stored or dummy_hash(n))


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password)


async def verify_password(password: str, stored: str | None) -> bool:
    ok = await asyncio.to_thread(_verify_sync, password, stored, N)
    return ok and stored is not None
