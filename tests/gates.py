"""A gate: an HTTP proxy a test puts between dbx and the store (or the CDN tier) to stop a transfer where it says.

A test that interrupts a transfer must not depend on how fast the machine is:
a signal sent "a little after the transfer began" comes after its end on a
loaded machine. With a gate, the test lets ``n`` requests through, holds the
next ones until it says otherwise, waits until dbx is stuck at the gate (every
worker waiting on a held request) and only then kills or interrupts it: the
transfer is at that point however long it took to get there.

The presigned URLs name the gate (the gateway's ``s3_public_endpoint``), so a
request reaches it signed for the gate's address; it is forwarded as it came,
its Host header included (SigV4 signs the host, and the store checks the
signature against the Host it receives), its body and other headers unchanged.
"""
from __future__ import annotations

import asyncio
from collections.abc import Collection

import aiohttp
from aiohttp import web
from yarl import URL

from storage.embedded import free_port

# Headers of one connection, not of the request (RFC 9110 7.6.1), and those aiohttp sets from the body it sends.
HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                        "upgrade", "content-length"))


class Gate:
    """A proxy to ``upstream``; once ``hold_after(n)`` is called, requests of ``methods`` beyond the ``n``th wait.

    Other methods always pass. ``release()`` ends the holding: the held
    requests are answered 503 without reaching ``upstream`` (they belong to the
    command the test stopped), and every later request passes. ``open()`` ends
    it too, but lets the held requests go on to ``upstream``. ``forwarded``
    lists every request that reached ``upstream``: (method, path, Range header).
    """

    def __init__(self, upstream: str, methods: Collection[str] = ("GET", "PUT")):
        self.upstream = upstream.rstrip("/")
        self.methods = {method.upper() for method in methods}
        self.port = free_port()
        self.allowed: int | None = None  # None: open
        self.arrived = 0  # requests of ``methods`` seen since hold_after
        self.answered: list[int] = []  # the upstream's statuses for the requests let through since hold_after
        self.held = 0  # waiting at the gate now
        self.forwarded: list[tuple[str, str, str | None]] = []
        self._pass_held = False
        self._released = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Gate:
        # As it came: no decompression, no headers of aiohttp's own (skip_auto_headers below).
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=300))
        app = web.Application(client_max_size=1024 ** 3)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def hold_after(self, n: int) -> None:
        """Let the next ``n`` requests of the gate's methods through and hold those after them."""
        self.allowed, self.arrived, self.answered, self.held = n, 0, [], 0
        self._pass_held = False
        self._released.clear()

    def release(self) -> None:
        """Answer the held requests 503 (without forwarding them) and let every later one through."""
        self.allowed = None
        self._released.set()

    def open(self) -> None:
        """Let the held requests go on to the upstream, and every later one."""
        self._pass_held = True
        self.release()

    async def holding(self, count: int, timeout: float = 60) -> None:
        """Wait until the ``n`` requests let through are answered and ``count`` more are held.

        With ``count`` equal to the command's ``--parallel``, every worker is
        waiting at the gate, so each is done with the requests it made before.
        """
        def there() -> bool:
            return self.allowed is not None and len(self.answered) == self.allowed and self.held >= count

        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(there), timeout)
        except TimeoutError:
            raise AssertionError(f"the gate never held {count} requests after {self.allowed} answered: "
                                 f"{self.arrived} arrived, answers {self.answered}, {self.held} held") from None

    async def _changes(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        allowed = self.allowed
        gated = allowed is not None and request.method in self.methods
        if gated and allowed is not None:
            self.arrived += 1
            if self.arrived > allowed:
                self.held += 1
                await self._changes()
                await self._released.wait()
                self.held -= 1
                if not self._pass_held:
                    return web.Response(status=503, text="held at the test's gate, then refused")
        body = await request.read()
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
        assert self._session is not None
        self.forwarded.append((request.method, request.path, request.headers.get("Range")))
        async with self._session.request(
            request.method, URL(self.upstream + request.raw_path, encoded=True), headers=headers,
            data=body if body or "Content-Length" in request.headers else None,
            skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type", "User-Agent"), allow_redirects=False,
        ) as upstream:
            answer = await upstream.read()
            status = upstream.status
            reply = {name: value for name, value in upstream.headers.items() if name.lower() not in HOP_BY_HOP}
        if gated:
            self.answered.append(status)
            await self._changes()
        return web.Response(status=status, body=answer, headers=reply)
