"""The ASGI app of one node: its routes, built from its services (townhall.services).

Registering a route module: its handlers take the services first,
`async def clip(services: Services, request: Request) -> Response`; it lists its JSON
operations in `OPERATIONS` (for GET /openapi.json: add them to `JSON_API` below) and
exposes `def routes(services: Services) -> list[Route]: return routes_of(OPERATIONS,
services)` (other routes: `Route(path, partial(handler, services))`, or an ASGI class
built with the services); add `*clips.routes(services)` to `app_routes`. Registering a
service: a field of `Services`, built in `build_services` with its collaborators as
constructor arguments (started and stopped in `Services.start`/`stop` if it runs
tasks); to hear of spaces scheduled, gone live or ended it takes the `Events` hub
and listens in its constructor (as Follows and the Door do). Refusals are domain
errors (townhall.domain.errors); api/errors.py gives them their status and body.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from townhall import __version__
from townhall.api import (
    accounts,
    captions,
    clip_forward,
    clips,
    edge_hls,
    follows,
    listening,
    metrics,
    moderation,
    operations,
    space_details,
    spaces,
    stage_forward,
    worker_joins,
    x_spaces,
)
from townhall.api.contract import openapi_route
from townhall.api.errors import EXCEPTION_HANDLERS
from townhall.api.fastpath import ListenerFastPath
from townhall.api.live import LiveStream, RelayProgram, report_listeners
from townhall.config import Settings
from townhall.server import ConnectionGuard, StoppingServer, uvicorn_config
from townhall.services import Services, build_services, load_secret
from townhall.web import pages

JSON_API = [
    *accounts.OPERATIONS,
    *spaces.OPERATIONS,
    *listening.OPERATIONS,
    *operations.OPERATIONS,
    *moderation.OPERATIONS,
    *captions.OPERATIONS,
    *clips.OPERATIONS,
    *x_spaces.OPERATIONS,
    *space_details.OPERATIONS,
    *follows.OPERATIONS,
]
"""Every operation of the JSON API, as GET /openapi.json publishes it."""


def app_routes(services: Services) -> list[BaseRoute]:
    """Every route of the node, each handler given the services it uses."""
    snapshot = next(op for op in spaces.OPERATIONS if op.endpoint is spaces.get_space)
    return [  # the listener path first: routes are matched in order
        Route("/live/{space_id}.aac", LiveStream(services), methods=["GET", "HEAD"]),
        *edge_hls.routes(services),  # an edge's HLS (none elsewhere), before every /hls/
        *captions.routes(services),  # before listening's /hls/{space_id}/{name}
        *listening.routes(services),
        snapshot.route(services),
        *accounts.routes(services),
        *spaces.routes(services),
        *operations.routes(services),
        *metrics.routes(services),  # /metrics is Prometheus text, not JSON API
        *clips.routes(services),
        *x_spaces.routes(services),
        *space_details.routes(services),
        *moderation.routes(services),
        *follows.routes(services),
        openapi_route(JSON_API, __version__),
        Route("/internal/program/{space_id}.aac", RelayProgram(services), methods=["GET"]),
        Route(
            "/internal/listeners", partial(report_listeners, services), methods=["POST"]
        ),
        *stage_forward.routes(services),
        *clip_forward.routes(services),
        *worker_joins.routes(services),
        *pages.page_routes(services.settings, services.spaces),
    ]


def create_app(
    settings: Settings, guard: ConnectionGuard | None = None, services: Services | None = None
) -> ListenerFastPath:
    """`guard` is the server's connection guard when run by `serve`; `services` replaces
    the ones built from `settings` (their lifespan is still this app's).

    The snapshot and join routes, which every arriving listener calls, are answered by
    ListenerFastPath in front of Starlette (the same answers without its routing,
    middleware and Request/Response objects); the Starlette routes stay for everything
    else and as the reference the fast path is tested against."""
    services = services or build_services(settings, guard)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    starlette = Starlette(
        routes=app_routes(services), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan
    )
    return ListenerFastPath(starlette, services)


def _server(app: ListenerFastPath, settings: Settings, guard: ConnectionGuard) -> StoppingServer:
    """uvicorn, ending the long-lived streams the moment a stop signal arrives."""
    return StoppingServer(uvicorn_config(app, settings, guard), app.services.stop_signalled)


def serve(settings: Settings) -> None:
    """Run the server until SIGINT/SIGTERM; with ``settings.edge.stream_workers`` the
    stream workers run beside it and stop with it."""
    from townhall.edge.limits import raise_open_file_limit

    raise_open_file_limit()
    guard = ConnectionGuard.from_settings(settings)
    app = create_app(settings, guard=guard)
    if not settings.edge.stream_workers:
        _server(app, settings, guard).run()
        return
    from townhall.edge.supervisor import Supervisor, deferred_signals

    supervisor = Supervisor(settings, load_secret(settings))
    # uvicorn re-raises the signal that stopped it once it is done; deferring it lets
    # the workers stop (and their listeners get EOF) before the process exits by it.
    with deferred_signals():
        supervisor.start()
        try:
            _server(app, settings, guard).run()
        finally:
            supervisor.stop()
