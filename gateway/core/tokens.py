"""JWT access tokens: HS256 only, with expiry; any other algorithm is refused."""
from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from gateway.core.errors import InvalidToken, TokenExpired

ALGORITHM = "HS256"
ISSUER = "dropbox-gateway"


@dataclass(frozen=True)
class TokenUser:
    user_id: int
    username: str


def issue_token(secret: str, user_id: int, username: str, ttl: int) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "username": username, "iat": now, "exp": now + ttl, "iss": ISSUER}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> TokenUser:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # never trust the token's own `alg`
            issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
        return TokenUser(int(claims["sub"]), str(claims["username"]))
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired() from exc
    except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc
