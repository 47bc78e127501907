"""Where the store's webhooks post: MinIO's format, and the embedded store's own.

``/dropbox/v1/events/seaweedfs`` (:data:`embedded_store_routes`) exists only
where the embedded store is used (``GATEWAY_STORE_PART_EVENTS``): anywhere else
nothing posts there, and an endpoint nobody needs is one more way in.
"""
from __future__ import annotations

import hmac

import structlog
from aiohttp import web

from gateway.http import appkeys
from gateway.http.errors import bad_request, unauthorized
from gateway.http.middlewares import bearer_token, public
from gateway.http.parsing import decode_json, read_body
from storage.events import PARSERS

routes = web.RouteTableDef()
embedded_store_routes = web.RouteTableDef()
log = structlog.get_logger("gateway.events")


def check_events_token(request: web.Request) -> None:
    expected = request.app[appkeys.CONFIG].events_token
    token = bearer_token(request) or ""
    # Constant-time comparison: the token is the only thing standing between this endpoint and anyone.
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise unauthorized("the store events endpoint needs `Authorization: Bearer <events token>`", "invalid_events_token")


async def receive(request: web.Request, fmt: str) -> web.Response:
    check_events_token(request)
    body = decode_json(await read_body(request), what=f"the {fmt} event", code="invalid_event")
    try:
        events = PARSERS[fmt](body)
    except ValueError as exc:  # MalformedEvent is a ValueError too
        raise bad_request(f"not a {fmt} event: {exc}", "invalid_event") from exc
    outcomes = []
    for event in events:
        outcome = await request.app[appkeys.CORE].events.handle(event)
        outcomes.append(outcome)
        request.app[appkeys.METRICS].store_event(event.kind, outcome)
        log.info(
            "store_event",
            format=fmt,
            source=event.source,
            kind=event.kind,
            key=event.key,
            upload_id=event.upload_id,
            part_number=event.part_number,
            outcome=outcome,
        )
    return web.json_response({"received": len(events), "outcomes": outcomes})


@routes.post("/dropbox/v1/events")
@public
async def minio_events(request: web.Request) -> web.Response:
    return await receive(request, "minio")


@embedded_store_routes.post("/dropbox/v1/events/seaweedfs")
@public
async def seaweedfs_events(request: web.Request) -> web.Response:
    return await receive(request, "seaweedfs")
