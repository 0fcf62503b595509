"""Composition: every backend is chosen here, once, and handed to the routes."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields

from starlette.applications import Starlette
from starlette.routing import Route

from townhall import __version__
from townhall.admission.signing import Signer
from townhall.api import accounts, listening, operations, spaces, stage_forward
from townhall.api.auth import require_user
from townhall.api.contract import openapi_route
from townhall.api.errors import EXCEPTION_HANDLERS
from townhall.api.fastpath import ListenerFastPath
from townhall.api.follows import FollowRoutes, FollowServices
from townhall.api.live import LiveStream, RelayProgram, report_listeners
from townhall.config import Settings
from townhall.nodes.peers import HttpPeerNodes
from townhall.private_files import create_private_file, make_private_dir
from townhall.server import ConnectionGuard
from townhall.service.accounts import Accounts, password_limits
from townhall.service.door import Door
from townhall.service.door_load import door_load
from townhall.service.event_hub import EventHub, HubLimits
from townhall.service.follows import FollowLimits, Follows
from townhall.service.notifier import Notifier, NotifierSettings
from townhall.service.passwords import Passwords
from townhall.service.spaces import Spaces, node_id_for
from townhall.service.webhooks import Webhooks, WebhookSettings
from townhall.service.write_limits import WriteLimiter
from townhall.stage.ice import default_host_addresses, use_host_addresses
from townhall.state import State, open_state
from townhall.store import SqlStore, Store, open_store
from townhall.store.follows import SqlFollowStore
from townhall.web import pages

log = logging.getLogger(__name__)

SECRET_FILE = "secret.key"
JSON_API = [*accounts.OPERATIONS, *spaces.OPERATIONS, *listening.OPERATIONS, *operations.OPERATIONS]
"""Every operation of the JSON API, as GET /openapi.json publishes it."""


def load_secret(settings: Settings) -> bytes:
    """The ticket key: configured, or generated once and kept beside the data, 0600
    from its creation (townhall.private_files)."""
    if settings.secret:
        return settings.secret.encode()
    path = settings.data_dir / SECRET_FILE
    make_private_dir(path.parent)
    try:
        fd = create_private_file(path)
    except FileExistsError:
        pass
    else:
        with open(fd, "w") as new_key:
            new_key.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclass
class Services:
    settings: Settings
    store: Store
    state: State
    accounts: Accounts
    spaces: Spaces
    signer: Signer
    door: Door
    write_limits: WriteLimiter
    follows: Follows
    event_hub: EventHub
    webhooks: Webhooks
    notifier: Notifier


async def open_services(settings: Settings, state: State | None = None) -> Services:
    make_private_dir(settings.data_dir)
    use_host_addresses(default_host_addresses(settings.stage.ice_host_addresses, settings.host))
    store = await open_store(settings.store_url)
    state = state or open_state(settings.state)
    node_id = node_id_for(settings.node_url)
    signer = Signer(load_secret(settings))
    spaces_service = Spaces(store, state, settings, node_id, peers=HttpPeerNodes(signer))
    door = Door(settings, signer, listeners=spaces_service.node_listeners)
    spaces_service.on_end = door.forget
    await spaces_service.start()
    await door.start()
    # -- follows and paced notifications (issue 10) --------------------------------------
    notify = settings.notify
    if not isinstance(store, SqlStore):
        raise TypeError("follows need the SQL store (SQLite or PostgreSQL)")
    follow_store = SqlFollowStore(store)
    event_hub = EventHub(
        HubLimits(notify.max_event_streams, notify.max_event_streams_per_user)
    )
    webhooks = Webhooks(
        WebhookSettings(
            url=notify.webhook_url,
            secret=notify.webhook_secret,
            attempts=notify.webhook_attempts,
            first_backoff_s=notify.webhook_first_backoff_s,
        )
    )
    notifier = Notifier(
        follow_store,
        event_hub,
        webhooks,
        door_load(door, state),
        NotifierSettings(
            pacing=notify.pacing,
            interval_s=notify.interval_s,
            arrival_share=notify.arrival_share,
            min_wave=notify.min_wave,
            max_wave=notify.max_wave,
            feed_retention_days=notify.feed_retention_days,
        ),
    )
    follows = Follows(
        store, follow_store, notifier, spaces_service.record, FollowLimits(notify.max_following)
    )
    spaces_service.on_scheduled = follows.space_created
    spaces_service.on_live = follows.space_live
    await webhooks.start()
    await notifier.start()
    # -------------------------------------------------------------------------------------
    return Services(
        settings=settings,
        store=store,
        state=state,
        accounts=Accounts(store, settings, Passwords(password_limits(settings))),
        spaces=spaces_service,
        signer=signer,
        door=door,
        write_limits=WriteLimiter(settings.limits),
        follows=follows,
        event_hub=event_hub,
        webhooks=webhooks,
        notifier=notifier,
    )


async def close_services(services: Services) -> None:
    await services.notifier.stop()
    await services.webhooks.stop()
    services.accounts.close()
    await services.door.stop()
    await services.spaces.stop()
    await services.state.close()
    await services.store.close()


def create_app(settings: Settings, guard: ConnectionGuard | None = None) -> ListenerFastPath:
    """`guard` is the server's connection guard when run by townhall.server.

    The snapshot and join routes, which every arriving listener calls, are answered by
    ListenerFastPath in front of Starlette (the same answers without its routing,
    middleware and Request/Response objects); the Starlette routes stay for everything
    else and as the reference the fast path is tested against. The wrapper's `state`
    and `router` are Starlette's."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await open_services(settings)
        for service in dataclass_fields(Services):  # every service, for the routes
            setattr(app.state, service.name, getattr(services, service.name))
        app.state.guard = guard or ConnectionGuard.from_settings(settings)
        app.state.operator_gate = operations.OperatorGate(settings.admin_token)
        services.door.on_mode_change = app.state.guard.apply_attack_mode(
            settings, services.door.attack
        )
        try:
            yield
        finally:
            await close_services(services)

    # -- follows (issue 10): the routes get their services from the lifespan's state ------
    def follow_services() -> FollowServices:
        state = starlette.state
        return FollowServices(state.follows, state.event_hub, state.webhooks, state.operator_gate)

    follow_routes = FollowRoutes(follow_services, require_user)
    # ---------------------------------------------------------------------------------------
    routes = [  # the listener path first: routes are matched in order
        Route("/live/{space_id}.aac", LiveStream(), methods=["GET", "HEAD"]),
        *listening.routes,
        Route("/api/spaces/{space_id}", spaces.get_space, methods=["GET"]),
        *accounts.routes,
        *spaces.routes,
        *operations.routes,
        *follow_routes.routes(),
        openapi_route([*JSON_API, *follow_routes.operations()], __version__),
        Route("/internal/program/{space_id}.aac", RelayProgram(), methods=["GET"]),
        Route("/internal/listeners", report_listeners, methods=["POST"]),
        *stage_forward.routes,
        *pages.page_routes(settings),
    ]
    starlette = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    return ListenerFastPath(starlette)
