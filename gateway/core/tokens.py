"""JWT access tokens: HS256 only, with expiry; any other algorithm is refused.

Besides who and until when, each token carries what lets it be ended before it
expires (gateway/core/accounts.py checks both on every request):

- ``jti``: a random id of its own, which a log-out revokes;
- ``gen``: the user's token generation when it was issued; a password change
  moves the generation on, and every token of an older one stops working;
- ``sid`` and ``sat``: the session it belongs to and when that began. A log-in
  starts a session; renewing a token in use (gateway/core/sessions.py) gives a
  new token of the same session, and a log-out ends the whole session.
"""
from __future__ import annotations

import functools
import secrets
import time
from dataclasses import dataclass

import jwt

from gateway.core.errors import InvalidToken, TokenExpired

ALGORITHM = "HS256"
ISSUER = "dropbox-gateway"


@dataclass(frozen=True)
class TokenUser:
    """Who an access token speaks for, and which token it is."""

    user_id: int
    username: str
    token_id: str  # the jti
    generation: int  # the user's token generation it was issued in
    expires_at: int  # unix seconds
    session_id: str  # the sid: the jti of the session's first token
    session_started: int  # unix seconds: when the user logged in


def token_time() -> int:
    """Now, as tokens count time: the system's clock in unix seconds, which the JWT library checks ``exp`` by
    (not the core's clock, which tests move)."""
    return int(time.time())


@dataclass(frozen=True)
class AccessToken:
    """An issued token, as POST /dropbox/v1/tokens answers it."""

    token: str
    expires_in: int  # seconds


def issue_token(secret: str, user_id: int, username: str, generation: int, ttl: int,
                session: tuple[str, int] | None = None) -> str:
    """A token of ``session`` (its id and start) or, without one, the first token of a new session."""
    now = token_time()
    token_id = secrets.token_urlsafe(16)
    session_id, started = session or (token_id, now)
    claims = {
        "sub": str(user_id), "username": username, "iat": now, "exp": now + ttl, "iss": ISSUER,
        "jti": token_id, "gen": generation, "sid": session_id, "sat": started,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> TokenUser:
    """The token's user if its signature, issuer and expiry are right; whether it was ended is not checked here.

    A token is checked whole once (:func:`_verified`, remembered for the VERIFIED_TOKENS tokens used
    last): the same string with the same secret verifies the same way every time, and only its expiry
    moves, which is checked on every call. A client sends one token with hundreds of requests; HS256 and
    the claims' checks cost about 40 us each (issue 26's profile of uncached reads: 3.5% of the gateway)."""
    user = _verified(secret, token)
    if user.expires_at <= token_time():
        raise TokenExpired()
    return user


# Tokens whose checks are remembered (a few hundred bytes each): more than the clients of one gateway use at once.
VERIFIED_TOKENS = 4096


@functools.lru_cache(maxsize=VERIFIED_TOKENS)
def _verified(secret: str, token: str) -> TokenUser:
    """The whole check of a token (:func:`verify_token`); its errors are raised, never remembered."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # never trust the token's own `alg`
            issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss", "jti"]},
        )
        generation = claims["gen"]
        if not isinstance(generation, int) or isinstance(generation, bool):
            raise ValueError("gen is not an integer")
        # Tokens issued before sessions were: each its own session, begun when it was issued.
        return TokenUser(int(claims["sub"]), str(claims["username"]), str(claims["jti"]), generation,
                         int(claims["exp"]), str(claims.get("sid", claims["jti"])), int(claims.get("sat", claims["iat"])))
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired() from exc
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc)) from exc
