"""Follows, reminders, the notification feed, the live event stream (SSE), the
host's "notified so far" and the operator's webhook log.

Each handler is given the node's services (townhall.services) by `routes`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from townhall.api.auth import client_address, require_user
from townhall.api.bodies import parse_query
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.follow_models import (
    Feed,
    FeedQuery,
    NotifyProgress,
    Relation,
    Reminder,
    WebhookLog,
)
from townhall.api.paths import space_id

if TYPE_CHECKING:
    from townhall.services import Services

HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies from closing an idle event stream."""
RETRY_MS = 3_000
"""What the browser's EventSource waits before reconnecting."""
SSE_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}

USER = "/api/users/{username}"
SPACE = "/api/spaces/{space_id}"


def sse_frame(event: str, data: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


async def follow_user(services: Services, request: Request) -> Response:
    actor = await require_user(request, services.accounts)
    return JSONResponse(await services.follows.follow(actor, request.path_params["username"]))


async def following(services: Services, request: Request) -> Response:
    actor = await require_user(request, services.accounts)
    body = await services.follows.relation(actor, request.path_params["username"])
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def unfollow_user(services: Services, request: Request) -> Response:
    actor = await require_user(request, services.accounts)
    return JSONResponse(await services.follows.unfollow(actor, request.path_params["username"]))


async def add_reminder(services: Services, request: Request) -> Response:
    actor = await require_user(request, services.accounts)
    return JSONResponse(await services.follows.remind(actor, space_id(request)))


async def my_reminder(services: Services, request: Request) -> Response:
    actor = await require_user(request, services.accounts)
    body = await services.follows.reminder(actor, space_id(request))
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def drop_reminder(services: Services, request: Request) -> Response:
    actor = await require_user(request, services.accounts)
    return JSONResponse(await services.follows.unremind(actor, space_id(request)))


async def my_notifications(services: Services, request: Request) -> Response:
    actor = await require_user(request, services.accounts)
    query = parse_query(FeedQuery, request)
    entries = await services.follows.feed(actor, query.limit, query.before)
    next_before = entries[-1]["id"] if len(entries) == query.limit else None
    return JSONResponse(
        {"notifications": entries, "next_before": next_before},
        headers={"cache-control": "no-store"},
    )


async def notified(services: Services, request: Request) -> Response:
    actor = await require_user(request, services.accounts)
    body = await services.follows.progress(actor, space_id(request))
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def my_events(services: Services, request: Request) -> Response:
    actor = await require_user(request, services.accounts)
    hub = services.event_hub
    subscription = hub.subscribe(actor.id)  # refuses past the bounds, before 200

    async def stream() -> AsyncIterator[bytes]:
        closing = asyncio.ensure_future(hub.closing.wait())
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            yield sse_frame("ready", b"{}")
            while not hub.closing.is_set():
                getting = asyncio.ensure_future(subscription.queue.get())
                done, _ = await asyncio.wait(
                    {getting, closing},
                    timeout=HEARTBEAT_S,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getting in done:
                    yield sse_frame("notification", getting.result())
                    continue
                getting.cancel()
                if not done:
                    yield b": keep-alive\n\n"
        finally:
            closing.cancel()
            hub.unsubscribe(subscription)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


async def webhook_deliveries(services: Services, request: Request) -> Response:
    services.operator_gate.check(request.headers.get("authorization", ""), client_address(request))
    return JSONResponse(
        {"enabled": services.webhooks.enabled, "deliveries": services.webhooks.deliveries()},
        headers={"cache-control": "no-store"},
    )


OPERATIONS = [
    Operation("POST", f"{USER}/follow", follow_user, "Follow someone", Relation,
              auth=Auth.USER, refusals=(409, 422)),
    Operation("GET", f"{USER}/follow", following, "Whether I follow someone",
              Relation, auth=Auth.USER),
    Operation("DELETE", f"{USER}/follow", unfollow_user, "Stop following someone",
              Relation, auth=Auth.USER),
    Operation("POST", f"{SPACE}/reminders", add_reminder,
              "Remind me when this scheduled space starts", Reminder, auth=Auth.USER,
              refusals=(409,)),
    Operation("GET", f"{SPACE}/reminders", my_reminder,
              "Whether I asked to be reminded", Reminder, auth=Auth.USER),
    Operation("DELETE", f"{SPACE}/reminders", drop_reminder, "No reminder",
              Reminder, auth=Auth.USER),
    Operation("GET", "/api/me/notifications", my_notifications,
              "My notifications, newest first", Feed, auth=Auth.USER, query=FeedQuery,
              refusals=(422,)),
    Operation("GET", "/api/me/events", my_events,
              "Live notifications as Server-Sent Events", auth=Auth.USER,
              media_type="text/event-stream", refusals=(429,)),
    Operation("GET", f"{SPACE}/notified", notified,
              "How many followers were told so far (host)", NotifyProgress, auth=Auth.USER),
    Operation("GET", "/api/admin/webhooks", webhook_deliveries,
              "The webhook delivery log (operator)", WebhookLog, auth=Auth.OPERATOR),
]  # fmt: skip


def routes(services: Services) -> list[Route]:
    return routes_of(OPERATIONS, services)
