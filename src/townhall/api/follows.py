"""Follows, reminders, the notification feed, the live event stream (SSE), the
host's "notified so far" and the operator's webhook log.

Built by the composition root with what they need (`FollowRoutes(...)`). The services
are handed over as one provider because today the app opens its services in its
lifespan, after the routes exist (app.py); once the services are built first, the
provider is `lambda: built` and nothing here changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from townhall.api.auth import client_address
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
from townhall.api.operations import OperatorGate
from townhall.api.paths import space_id
from townhall.domain.spaces import User
from townhall.service.event_hub import EventHub
from townhall.service.follows import Follows
from townhall.service.webhooks import Webhooks

HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies from closing an idle event stream."""
RETRY_MS = 3_000
"""What the browser's EventSource waits before reconnecting."""
SSE_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}

USER = "/api/users/{username}"
SPACE = "/api/spaces/{space_id}"


def sse_frame(event: str, data: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


@dataclass(frozen=True)
class FollowServices:
    follows: Follows
    hub: EventHub
    webhooks: Webhooks
    operator_gate: OperatorGate


class FollowRoutes:
    def __init__(
        self,
        services: Callable[[], FollowServices],
        require_user: Callable[[Request], Awaitable[User]],
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._services = services
        self._user = require_user
        self._heartbeat_s = heartbeat_s

    @property
    def _follows(self) -> Follows:
        return self._services().follows

    @property
    def _hub(self) -> EventHub:
        return self._services().hub

    @property
    def _webhooks(self) -> Webhooks:
        return self._services().webhooks

    async def follow_user(self, request: Request) -> Response:
        actor = await self._user(request)
        return JSONResponse(await self._follows.follow(actor, request.path_params["username"]))

    async def following(self, request: Request) -> Response:
        actor = await self._user(request)
        body = await self._follows.relation(actor, request.path_params["username"])
        return JSONResponse(body, headers={"cache-control": "no-store"})

    async def unfollow_user(self, request: Request) -> Response:
        actor = await self._user(request)
        return JSONResponse(await self._follows.unfollow(actor, request.path_params["username"]))

    async def add_reminder(self, request: Request) -> Response:
        actor = await self._user(request)
        return JSONResponse(await self._follows.remind(actor, space_id(request)))

    async def my_reminder(self, request: Request) -> Response:
        actor = await self._user(request)
        body = await self._follows.reminder(actor, space_id(request))
        return JSONResponse(body, headers={"cache-control": "no-store"})

    async def drop_reminder(self, request: Request) -> Response:
        actor = await self._user(request)
        return JSONResponse(await self._follows.unremind(actor, space_id(request)))

    async def my_notifications(self, request: Request) -> Response:
        actor = await self._user(request)
        query = parse_query(FeedQuery, request)
        entries = await self._follows.feed(actor, query.limit, query.before)
        next_before = entries[-1]["id"] if len(entries) == query.limit else None
        return JSONResponse(
            {"notifications": entries, "next_before": next_before},
            headers={"cache-control": "no-store"},
        )

    async def notified(self, request: Request) -> Response:
        actor = await self._user(request)
        body = await self._follows.progress(actor, space_id(request))
        return JSONResponse(body, headers={"cache-control": "no-store"})

    async def my_events(self, request: Request) -> Response:
        actor = await self._user(request)
        hub = self._hub
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
                        timeout=self._heartbeat_s,
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

    async def webhook_deliveries(self, request: Request) -> Response:
        gate = self._services().operator_gate
        gate.check(request.headers.get("authorization", ""), client_address(request))
        return JSONResponse(
            {"enabled": self._webhooks.enabled, "deliveries": self._webhooks.deliveries()},
            headers={"cache-control": "no-store"},
        )

    def operations(self) -> list[Operation]:
        user = Auth.USER
        return [
            Operation("POST", f"{USER}/follow", self.follow_user, "Follow someone", Relation,
                      auth=user, refusals=(409, 422)),
            Operation("GET", f"{USER}/follow", self.following, "Whether I follow someone",
                      Relation, auth=user),
            Operation("DELETE", f"{USER}/follow", self.unfollow_user, "Stop following someone",
                      Relation, auth=user),
            Operation("POST", f"{SPACE}/reminders", self.add_reminder,
                      "Remind me when this scheduled space starts", Reminder, auth=user,
                      refusals=(409,)),
            Operation("GET", f"{SPACE}/reminders", self.my_reminder,
                      "Whether I asked to be reminded", Reminder, auth=user),
            Operation("DELETE", f"{SPACE}/reminders", self.drop_reminder, "No reminder",
                      Reminder, auth=user),
            Operation("GET", "/api/me/notifications", self.my_notifications,
                      "My notifications, newest first", Feed, auth=user, query=FeedQuery,
                      refusals=(422,)),
            Operation("GET", "/api/me/events", self.my_events,
                      "Live notifications as Server-Sent Events", auth=user,
                      media_type="text/event-stream", refusals=(429,)),
            Operation("GET", f"{SPACE}/notified", self.notified,
                      "How many followers were told so far (host)", NotifyProgress, auth=user),
            Operation("GET", "/api/admin/webhooks", self.webhook_deliveries,
                      "The webhook delivery log (operator)", WebhookLog, auth=Auth.OPERATOR),
        ]  # fmt: skip

    def routes(self) -> list[Route]:
        return routes_of(self.operations())
