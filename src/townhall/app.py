"""Composition: every backend is chosen here, once, and handed to the routes."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import Route

from townhall.admission.signing import Signer
from townhall.api import accounts, listening, operations, spaces, stage_forward
from townhall.api.errors import EXCEPTION_HANDLERS
from townhall.api.fastpath import ListenerFastPath
from townhall.api.live import LiveStream, RelayProgram, report_listeners
from townhall.config import Settings
from townhall.nodes.peers import HttpPeerNodes
from townhall.server import ConnectionGuard
from townhall.service.accounts import Accounts
from townhall.service.door import Door
from townhall.service.spaces import Spaces, node_id_for
from townhall.stage.ice import use_host_addresses
from townhall.state import State, open_state
from townhall.store.sqlite import SqliteStore
from townhall.web import pages

log = logging.getLogger(__name__)

SECRET_FILE = "secret.key"


def load_secret(settings: Settings) -> bytes:
    """The ticket key: configured, or generated once and kept beside the data."""
    if settings.secret:
        return settings.secret.encode()
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


@dataclass
class Services:
    settings: Settings
    store: SqliteStore
    state: State
    accounts: Accounts
    spaces: Spaces
    signer: Signer
    door: Door


async def open_services(settings: Settings, state: State | None = None) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    use_host_addresses(settings.stage.ice_host_addresses)
    store = await SqliteStore(settings.database_path).open()
    state = state or open_state(settings.state)
    node_id = node_id_for(settings.node_url)
    signer = Signer(load_secret(settings))
    spaces_service = Spaces(store, state, settings, node_id, peers=HttpPeerNodes(signer))
    door = Door(settings, signer, listeners=spaces_service.node_listeners)
    spaces_service.on_end = door.forget
    await spaces_service.start()
    await door.start()
    return Services(
        settings=settings,
        store=store,
        state=state,
        accounts=Accounts(store, settings),
        spaces=spaces_service,
        signer=signer,
        door=door,
    )


async def close_services(services: Services) -> None:
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
        for name in ("settings", "store", "state", "accounts", "spaces", "signer", "door"):
            setattr(app.state, name, getattr(services, name))
        app.state.guard = guard or ConnectionGuard.from_settings(settings)
        services.door.on_mode_change = app.state.guard.apply_attack_mode(
            settings, services.door.attack
        )
        try:
            yield
        finally:
            await close_services(services)

    routes = [  # the listener path first: routes are matched in order
        Route("/live/{space_id}.aac", LiveStream(), methods=["GET", "HEAD"]),
        *listening.routes,
        Route("/api/spaces/{space_id}", spaces.get_space, methods=["GET"]),
        *accounts.routes,
        *spaces.routes,
        *operations.routes,
        Route("/internal/program/{space_id}.aac", RelayProgram(), methods=["GET"]),
        Route("/internal/listeners", report_listeners, methods=["POST"]),
        *stage_forward.routes,
        *pages.routes,
    ]
    starlette = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    return ListenerFastPath(starlette)
