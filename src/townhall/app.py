"""Composition: every backend is chosen here, once, and handed to the routes."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from townhall import __version__
from townhall.admission.signing import Signer
from townhall.api import (
    accounts,
    clips,
    listening,
    moderation,
    operations,
    space_details,
    spaces,
    stage_forward,
    x_spaces,
)
from townhall.api.auth import require_user
from townhall.api.captions import CaptionRoutes
from townhall.api.contract import openapi_route, routes_of
from townhall.api.errors import EXCEPTION_HANDLERS
from townhall.api.fastpath import ListenerFastPath
from townhall.api.follows import FollowRoutes, FollowServices
from townhall.api.live import LiveStream, RelayProgram, report_listeners
from townhall.api.metrics import MetricsEndpoint
from townhall.config import Settings
from townhall.edge.reports import ListenerReports
from townhall.metrics.node import NodeCollector, room_figures
from townhall.nodes.peers import HttpPeerNodes
from townhall.private_files import create_private_file, make_private_dir
from townhall.server import ConnectionGuard
from townhall.service.accounts import Accounts, password_limits
from townhall.service.audience_list import AudienceList
from townhall.service.captions import Captions
from townhall.service.clips import Clips
from townhall.service.door import Door
from townhall.service.door_load import door_load
from townhall.service.event_hub import EventHub, HubLimits
from townhall.service.follows import FollowLimits, Follows
from townhall.service.moderation import Moderation
from townhall.service.notifier import Notifier, NotifierSettings
from townhall.service.passwords import Passwords
from townhall.service.spaces import Spaces, node_id_for
from townhall.service.webhooks import Webhooks, WebhookSettings
from townhall.service.write_limits import WriteLimiter
from townhall.service.x_directory import SpaceDirectory
from townhall.stage.ice import default_host_addresses, use_host_addresses
from townhall.state import State, open_state
from townhall.store import SqlStore, Store, open_store
from townhall.store.clips import SqlClipStore
from townhall.store.follows import SqlFollowStore
from townhall.store.moderation import SqlModerationStore
from townhall.web import pages

log = logging.getLogger(__name__)

SECRET_FILE = "secret.key"
JSON_API = [
    *accounts.OPERATIONS,
    *spaces.OPERATIONS,
    *listening.OPERATIONS,
    *operations.OPERATIONS,
    *moderation.OPERATIONS,
]
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
    captions: Captions
    clips: Clips
    x_directory: SpaceDirectory
    audience_list: AudienceList
    moderation: Moderation
    follows: Follows
    event_hub: EventHub
    webhooks: Webhooks
    notifier: Notifier


async def open_services(
    settings: Settings, state: State | None = None, captions: Captions | None = None
) -> Services:
    make_private_dir(settings.data_dir)
    use_host_addresses(default_host_addresses(settings.stage.ice_host_addresses, settings.host))
    store = await open_store(settings.store_url)
    state = state or open_state(settings.state)
    node_id = node_id_for(settings.node_url)
    signer = Signer(load_secret(settings))
    captions = captions or Captions(settings.captions, settings.recordings_dir)
    spaces_service = Spaces(
        store, state, settings, node_id, peers=HttpPeerNodes(signer), captions=captions
    )
    door = Door(settings, signer, listeners=spaces_service.node_listeners)
    spaces_service.on_end = door.forget
    await spaces_service.start()
    await door.start()
    assert isinstance(store, SqlStore)  # clips share its connections (store/clips.py)
    clips_service = Clips(
        SqlClipStore(store),
        spaces_service,
        settings.clips,
        directory=settings.clips_dir,
        live_window_s=settings.audio.clip_window_s,
    )
    await clips_service.start()
    accounts_service = Accounts(store, settings, Passwords(password_limits(settings)))
    # -- moderation (issue 10): its store runs on the store's engine; it hooks into
    # Spaces (blocks, host actions) and Accounts (suspensions); it removes clips.
    assert isinstance(store, SqlStore)
    moderation_service = Moderation(
        SqlModerationStore(store.run), store, spaces_service, accounts_service, clips=clips_service
    )
    moderation_service.attach()
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
        accounts=accounts_service,
        spaces=spaces_service,
        signer=signer,
        door=door,
        write_limits=WriteLimiter(settings.limits),
        captions=captions,
        clips=clips_service,
        x_directory=SpaceDirectory(spaces_service, store),
        audience_list=AudienceList(spaces_service, store),
        moderation=moderation_service,
        follows=follows,
        event_hub=event_hub,
        webhooks=webhooks,
        notifier=notifier,
    )


async def close_services(services: Services) -> None:
    await services.notifier.stop()
    await services.webhooks.stop()
    services.accounts.close()
    await services.clips.stop()
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

    # -- GET /metrics (issue 8): collectors join the registry once the services are up --
    operator_gate = operations.OperatorGate(settings.admin_token)
    metrics_registry = CollectorRegistry(auto_describe=False)
    metrics_endpoint = MetricsEndpoint(metrics_registry, operator_gate)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await open_services(settings, captions=captions)
        for service in dataclass_fields(Services):  # every service, for the routes
            setattr(app.state, service.name, getattr(services, service.name))
        app.state.guard = guard or ConnectionGuard.from_settings(settings)
        app.state.operator_gate = operator_gate
        app.state.listener_reports = reports = ListenerReports()
        collector = NodeCollector(
            services.door, app.state.guard, lambda: room_figures(services.spaces.rooms), reports
        )
        metrics_registry.register(collector)
        moderation_api.append(  # -- moderation (issue 10): its handlers, once services exist
            moderation.ModerationApi(
                services.moderation,
                services.accounts,
                operator_gate,
                settings.http.max_body_bytes,
            )
        )
        services.door.on_mode_change = app.state.guard.apply_attack_mode(
            settings, services.door.attack
        )
        try:
            yield
        finally:
            metrics_registry.unregister(collector)
            await close_services(services)

    # captions (issue 10): built here, before the services, so its routes get it by constructor
    captions = Captions(settings.captions, settings.recordings_dir)
    caption_routes = CaptionRoutes(captions)
    # -- issue 10 (clips, X API): routes built with their services; until the composition
    # root builds the services before the routes, each reads them from the app's state.
    late: dict[str, Starlette] = {}
    clip_operations = clips.operations(
        lambda: late["app"].state.clips, settings.http.max_body_bytes
    )
    x_operations = x_spaces.operations(lambda: late["app"].state.x_directory)
    detail_operations = space_details.operations(
        lambda: late["app"].state.spaces,
        lambda: late["app"].state.audience_list,
        settings.http.max_body_bytes,
    )
    issue_10_operations = [*clip_operations, *x_operations, *detail_operations]
    # -- end of issue 10 block
    moderation_api: list[moderation.ModerationApi] = []
    # -- follows (issue 10): the routes get their services from the lifespan's state ------
    def follow_services() -> FollowServices:
        state = starlette.state
        return FollowServices(state.follows, state.event_hub, state.webhooks, state.operator_gate)

    follow_routes = FollowRoutes(follow_services, require_user)
    # ---------------------------------------------------------------------------------------
    routes = [  # the listener path first: routes are matched in order
        Route("/live/{space_id}.aac", LiveStream(), methods=["GET", "HEAD"]),
        *caption_routes.routes(),  # before listening's /hls/{space_id}/{name}
        *listening.routes,
        Route("/api/spaces/{space_id}", spaces.get_space, methods=["GET"]),
        *accounts.routes,
        *spaces.routes,
        *operations.routes,
        *metrics_endpoint.routes(),  # /metrics is Prometheus text, not JSON API
        *routes_of(issue_10_operations),
        *moderation.deferred_routes(lambda: moderation_api[-1]),
        *follow_routes.routes(),
        openapi_route(
            [
                *JSON_API,
                *caption_routes.operations(),
                *issue_10_operations,
                *follow_routes.operations(),
            ],
            __version__,
        ),
        Route("/internal/program/{space_id}.aac", RelayProgram(), methods=["GET"]),
        Route("/internal/listeners", report_listeners, methods=["POST"]),
        *stage_forward.routes,
        *pages.page_routes(settings),
    ]
    starlette = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    late["app"] = starlette
    return ListenerFastPath(starlette)
