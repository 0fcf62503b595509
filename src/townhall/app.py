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
from townhall.api import accounts, listening, moderation, operations, spaces, stage_forward
from townhall.api.contract import openapi_route
from townhall.api.errors import EXCEPTION_HANDLERS
from townhall.api.fastpath import ListenerFastPath
from townhall.api.live import LiveStream, RelayProgram, report_listeners
from townhall.config import Settings
from townhall.nodes.peers import HttpPeerNodes
from townhall.private_files import create_private_file, make_private_dir
from townhall.server import ConnectionGuard
from townhall.service.accounts import Accounts, password_limits
from townhall.service.door import Door
from townhall.service.moderation import Moderation
from townhall.service.passwords import Passwords
from townhall.service.spaces import Spaces, node_id_for
from townhall.service.write_limits import WriteLimiter
from townhall.stage.ice import default_host_addresses, use_host_addresses
from townhall.state import State, open_state
from townhall.store import SqlStore, Store, open_store
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
    moderation: Moderation


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
    accounts_service = Accounts(store, settings, Passwords(password_limits(settings)))
    # -- moderation (issue 10): its store runs on the store's engine; it hooks into
    # Spaces (blocks, host actions) and Accounts (suspensions). Clips: set .clips.
    assert isinstance(store, SqlStore)
    moderation_service = Moderation(
        SqlModerationStore(store.run), store, spaces_service, accounts_service
    )
    moderation_service.attach()
    return Services(
        settings=settings,
        store=store,
        state=state,
        accounts=accounts_service,
        spaces=spaces_service,
        signer=signer,
        door=door,
        write_limits=WriteLimiter(settings.limits),
        moderation=moderation_service,
    )


async def close_services(services: Services) -> None:
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
        moderation_api.append(  # -- moderation (issue 10): its handlers, once services exist
            moderation.ModerationApi(
                services.moderation,
                services.accounts,
                app.state.operator_gate,
                settings.http.max_body_bytes,
            )
        )
        services.door.on_mode_change = app.state.guard.apply_attack_mode(
            settings, services.door.attack
        )
        try:
            yield
        finally:
            await close_services(services)

    moderation_api: list[moderation.ModerationApi] = []
    routes = [  # the listener path first: routes are matched in order
        Route("/live/{space_id}.aac", LiveStream(), methods=["GET", "HEAD"]),
        *listening.routes,
        Route("/api/spaces/{space_id}", spaces.get_space, methods=["GET"]),
        *accounts.routes,
        *spaces.routes,
        *operations.routes,
        *moderation.deferred_routes(lambda: moderation_api[-1]),
        openapi_route(JSON_API, __version__),
        Route("/internal/program/{space_id}.aac", RelayProgram(), methods=["GET"]),
        Route("/internal/listeners", report_listeners, methods=["POST"]),
        *stage_forward.routes,
        *pages.page_routes(settings),
    ]
    starlette = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    return ListenerFastPath(starlette)
