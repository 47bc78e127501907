"""Slow clients (slowloris) against the gateway in-process: a half-sent request is closed after its timeout.

The review held 3,000 half-sent requests open on one gateway for 43 s (aiohttp
waits 75 s by default for a head, and for ever for a body). The timeouts are
settings; these tests set short ones and wait for the gateway to close the
connection or answer, never for a time of their own (the waits' bound only
fails a test whose gateway never acts).
"""
from __future__ import annotations

import asyncio
import json

from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - the gateway in-process
from tests.harness import Api

NEVER = 30  # seconds after which a wait fails the test: the gateway did not act at all
HALF_SENT_HEADS = 200


async def half_sent(port: int, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    return reader, writer


async def closed_by_the_gateway(reader: asyncio.StreamReader) -> bytes:
    """Everything the gateway sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), NEVER)


async def test_half_sent_heads_are_closed_after_the_header_timeout_and_others_are_served(make_gateway, http):
    # Long enough that the other client's own head, sent at once, is never late on a loaded machine (the
    # gateway shares this process with the test; one run at load 6 reset the /healthz at 0.5 s).
    gateway = await make_gateway(header_timeout=2.0)
    head = b"POST /dropbox/v1/tokens HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nX-Slow: "
    held = [await half_sent(gateway.config.port, head) for _ in range(HALF_SENT_HEADS)]
    try:
        # Another client meanwhile: answered at once.
        assert (await Api(http, gateway.url).get("/healthz")).status == 200
        answers = await asyncio.gather(*(closed_by_the_gateway(reader) for reader, _ in held), return_exceptions=True)
        # Closed without an answer (there was no request to answer); a reset is a close too (one run at
        # load 9 saw one among them), anything else is not.
        assert all(answer == b"" or isinstance(answer, ConnectionResetError) for answer in answers), answers
    finally:
        for _, writer in held:
            writer.close()


async def test_a_body_that_stops_arriving_is_answered_408_and_the_connection_closed(make_gateway):
    gateway = await make_gateway(body_timeout=0.5)
    body = json.dumps({"username": "slow", "email": "slow@example.com", "password": "correct horse battery"})
    head = (f"POST /dropbox/v1/users HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    reader, writer = await half_sent(gateway.config.port, head + body[:10].encode())
    try:
        answer = await closed_by_the_gateway(reader)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert json.loads(payload)["error"]["code"] == "request_timeout"
    assert b"Connection: close" in headers
    rows = await gateway.core.db.fetchall("SELECT id FROM users")
    assert rows == [], "nothing was signed up from the half a body"


async def test_a_body_sent_in_full_after_its_head_is_not_cut_short(make_gateway, http):
    """The body clock runs only while bytes are due: a request that sends its body in full passes."""
    gateway = await make_gateway(body_timeout=0.5)
    created = await Api(http, gateway.url).post("/dropbox/v1/users", json={
        "username": "prompt", "email": "prompt@example.com", "password": "correct horse battery"})
    assert created.status == 201
