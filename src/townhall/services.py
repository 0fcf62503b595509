"""The composition root: every service of one node, built once from the settings.

`build_services` chooses each backend once (the State from `--state`, the Store from
`--store`), builds every service with what it needs passed to its constructor, and
returns one typed `Services`. The routes, the listener fast path and the live stream
are built from that object (townhall.app), so no handler looks a service up at request
time and nothing is created on first use. Building does no I/O; `start` opens the
store (migrations), the state and the background tasks, `stop` closes them.

Events between services (a space ended, attack mode changed) go through one
`Events` hub built first (townhall.service.events).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from townhall.admission.signing import Signer
from townhall.config import Settings
from townhall.edge.reports import ListenerReports
from townhall.nodes.peers import HttpPeerNodes
from townhall.private_files import create_private_file, make_private_dir
from townhall.server import ConnectionGuard
from townhall.service.accounts import Accounts, password_limits
from townhall.service.door import Door
from townhall.service.events import Events
from townhall.service.operator_gate import OperatorGate
from townhall.service.passwords import Passwords
from townhall.service.shared_line import SharedLine
from townhall.service.spaces import Spaces, node_id_for
from townhall.service.write_limits import WriteLimiter
from townhall.stage.ice import default_host_addresses, use_host_addresses
from townhall.state import State, is_shared, open_state
from townhall.store import SqlStore, Store

SECRET_FILE = "secret.key"


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
    """Everything a node's routes and workers use, each chosen and built once."""

    settings: Settings
    """Read at each request (a test may swap it for other settings)."""
    store: Store
    state: State
    events: Events
    signer: Signer
    guard: ConnectionGuard
    accounts: Accounts
    spaces: Spaces
    door: Door
    write_limits: WriteLimiter
    operator_gate: OperatorGate
    listener_reports: ListenerReports
    """What the stream workers last reported, per worker (POST /internal/listeners)."""
    started: bool = False
    """Set once `start` has opened every backend (GET /api/health says "starting" before)."""

    async def start(self) -> None:
        await self.store.open()
        await self.spaces.start()
        await self.door.start()
        self.started = True

    async def stop(self) -> None:
        self.started = False
        self.accounts.close()
        await self.door.stop()
        await self.spaces.stop()
        await self.state.close()
        await self.store.close()


def build_services(
    settings: Settings, guard: ConnectionGuard | None = None, state: State | None = None
) -> Services:
    """Every service of one node from its settings. `guard` is the server's connection
    guard when run by townhall.app.serve (else one is made from the settings); `state`
    replaces the one `settings.state` names (a test shares one in-memory State)."""
    make_private_dir(settings.data_dir)
    use_host_addresses(default_host_addresses(settings.stage.ice_host_addresses, settings.host))
    guard = guard or ConnectionGuard.from_settings(settings)
    events = Events(on_attack_mode=[guard.follow_attack_mode])
    store = SqlStore(settings.store_url)
    state = state or open_state(settings.state)
    signer = Signer(load_secret(settings))
    spaces = Spaces(
        store,
        state,
        settings,
        node_id_for(settings.node_url),
        peers=HttpPeerNodes(signer),
        events=events,
    )
    line = SharedLine(state) if is_shared(settings.state) else None
    door = Door(
        settings, signer, listeners=spaces.node_listeners, events=events, state=state, line=line
    )
    return Services(
        settings=settings,
        store=store,
        state=state,
        events=events,
        signer=signer,
        guard=guard,
        accounts=Accounts(store, settings, Passwords(password_limits(settings))),
        spaces=spaces,
        door=door,
        write_limits=WriteLimiter(settings.limits),
        operator_gate=OperatorGate(settings.admin_token),
        listener_reports=ListenerReports(),
    )
