"""The composition root: every service of one node, built once from the settings.

`build_services` chooses each backend once (the State from `--state`, the Store from
`--store`), builds every service with what it needs passed to its constructor, and
returns one typed `Services`. The routes, the listener fast path and the live stream
are built from that object (townhall.app), so no handler looks a service up at request
time and nothing is created on first use. Building does no I/O; `start` opens the
store (migrations), the state and the background tasks, `stop` closes them.

Events between services (a space scheduled, live or ended, attack mode changed) go
through one `Events` hub built first (townhall.service.events). Moderation's part in
other services (who is blocked or suspended, the audit log of hosts' actions) is a
`Standing` built before Spaces and Accounts and passed to them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from townhall.admission.signing import Signer
from townhall.config import Settings
from townhall.edge.one_stream import TicketHolders
from townhall.edge.reports import ListenerReports
from townhall.metrics.node import NodeCollector, room_figures
from townhall.nodes.peers import HttpPeerNodes
from townhall.nodes.roles import EDGE
from townhall.private_files import create_private_file, make_private_dir
from townhall.server import ConnectionGuard
from townhall.service.accounts import Accounts, password_limits
from townhall.service.audience_list import AudienceList
from townhall.service.audit_checkpoint import AUDIT_HEAD_FILE, AuditCheckpointFile
from townhall.service.captions import Captions
from townhall.service.clips import Clips
from townhall.service.door import Door
from townhall.service.door_load import door_load
from townhall.service.edge_hls import EdgeHls
from townhall.service.event_hub import EventHub, HubLimits
from townhall.service.events import Events
from townhall.service.follows import FollowLimits, Follows
from townhall.service.listener_names import ListenerNames
from townhall.service.listener_nodes import ListenerNodes, advertised_stream_url
from townhall.service.moderation import Moderation
from townhall.service.node_health import NodeHealth
from townhall.service.notifier import Notifier, NotifierSettings
from townhall.service.operator_gate import OperatorGate
from townhall.service.passwords import Passwords
from townhall.service.relayed_programs import RelayedPrograms
from townhall.service.shared_line import SharedLine
from townhall.service.spaces import Spaces, node_id_for
from townhall.service.standing import Standing
from townhall.service.webhooks import Webhooks, WebhookSettings
from townhall.service.write_limits import WriteLimiter
from townhall.service.x_directory import SpaceDirectory
from townhall.stage.ice import default_host_addresses, use_host_addresses
from townhall.state import State, is_shared, open_state
from townhall.store import SqlStore, Store
from townhall.store.clips import SqlClipStore
from townhall.store.follows import SqlFollowStore
from townhall.store.moderation import SqlModerationStore

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
    ticket_holders: TicketHolders
    """Which node holds each ticket's latest stream (townhall.edge.one_stream)."""
    captions: Captions
    clips: Clips
    x_directory: SpaceDirectory
    audience_list: AudienceList
    moderation: Moderation
    follows: Follows
    event_hub: EventHub
    """The live notification streams (GET /api/me/events); closed first on a stop."""
    webhooks: Webhooks
    notifier: Notifier
    metrics_registry: CollectorRegistry
    """What GET /metrics exposes: the node's collector while the services run."""
    metrics_collector: NodeCollector
    listener_nodes: ListenerNodes
    """Where join answers send listeners (the least-loaded edge, else the stage's node)."""
    relayed_programs: RelayedPrograms | None = None
    """On an edge (--role edge): the programs it relays once from their origins."""
    edge_hls: EdgeHls | None = None
    """On an edge: the origins' HLS through a bounded cache."""
    started: bool = False
    """Set once `start` has opened every backend (GET /api/health says "starting" before)."""
    _collecting: bool = field(default=False, repr=False)

    async def start(self) -> None:
        await self.store.open()
        await self.spaces.start()
        await self.door.start()
        await self.clips.start()
        await self.webhooks.start()
        await self.notifier.start()
        self.metrics_registry.register(self.metrics_collector)
        self._collecting = True
        self.started = True

    def stop_signalled(self) -> None:
        """A stop signal arrived: end the long-lived connections now (live event streams,
        live streams, the relays of edges and stream workers). uvicorn waits for open
        connections before the app's own shutdown runs, so each would otherwise hold the
        stop for the whole grace period and then be cancelled (a traceback in the log);
        and a listener whose stream ends re-joins another node at once."""
        self.event_hub.close()
        self.spaces.stopping()
        for room in self.spaces.rooms:
            room.program.live.close()
        if self.relayed_programs is not None:
            self.relayed_programs.end_streams()

    async def stop(self) -> None:
        self.started = False
        if self._collecting:
            self.metrics_registry.unregister(self.metrics_collector)
            self._collecting = False
        self.event_hub.close()
        await self.spaces.hand_over()  # first: a survivor takes the stages over now
        await self.notifier.stop()
        await self.webhooks.stop()
        self.accounts.close()
        await self.clips.stop()
        await self.door.stop()
        if self.relayed_programs is not None:
            await self.relayed_programs.close()
        if self.edge_hls is not None:
            await self.edge_hls.close()
        await self.spaces.stop()
        await self.state.close()
        await self.store.close()


def build_services(
    settings: Settings,
    guard: ConnectionGuard | None = None,
    state: State | None = None,
    captions: Captions | None = None,
) -> Services:
    """Every service of one node from its settings. `guard` is the server's connection
    guard when run by townhall.app.serve (else one is made from the settings); `state`
    replaces the one `settings.state` names (a test shares one in-memory State);
    `captions` replaces the captioner the settings describe."""
    make_private_dir(settings.data_dir)
    use_host_addresses(default_host_addresses(settings.stage.ice_host_addresses, settings.host))
    guard = guard or ConnectionGuard.from_settings(settings)
    events = Events(on_attack_mode=[guard.follow_attack_mode])
    store: Store = SqlStore(settings.store_url)
    state = state or open_state(settings.state)
    signer = Signer(load_secret(settings))
    captions = captions or Captions(settings.captions, settings.recordings_dir)
    peers = HttpPeerNodes(signer)
    moderation_store = SqlModerationStore(store.run)
    standing = Standing(
        moderation_store, state, AuditCheckpointFile(settings.data_dir / AUDIT_HEAD_FILE, signer)
    )
    names = ListenerNames(store)
    node_id = node_id_for(settings.node_url)
    listener_reports = ListenerReports()
    relayed = (
        RelayedPrograms(
            state, signer, node_id, settings.audio, settings.edge, workers=listener_reports
        )
        if settings.role == EDGE
        else None
    )
    spaces = Spaces(
        store,
        state,
        settings,
        node_id,
        peers=peers,
        captions=captions,
        events=events,
        standing=standing,
        names=names,
        relayed=relayed,
        stream_url=advertised_stream_url(settings),
    )
    line = SharedLine(state) if is_shared(settings.state) else None
    door = Door(
        settings, signer, listeners=spaces.node_listeners, events=events, state=state, line=line
    )
    accounts = Accounts(
        store,
        settings,
        Passwords(password_limits(settings)),
        suspension=standing.suspension_statement,
    )
    clips = Clips(
        SqlClipStore(store),
        spaces,
        settings.clips,
        directory=settings.clips_dir,
        live_window_s=settings.audio.clip_window_s,
        node_id=node_id,
        peers=peers,
        nodes=state,
    )
    moderation = Moderation(moderation_store, store, spaces, accounts, standing, clips=clips)
    notify = settings.notify
    follow_store = SqlFollowStore(store)
    event_hub = EventHub(
        HubLimits(notify.max_event_streams, notify.max_event_streams_per_user), bus=state
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
        store,
        follow_store,
        notifier,
        spaces.record,
        FollowLimits(notify.max_following),
        events=events,
    )
    return Services(
        settings=settings,
        store=store,
        state=state,
        events=events,
        signer=signer,
        guard=guard,
        accounts=accounts,
        spaces=spaces,
        door=door,
        write_limits=WriteLimiter(settings.limits),
        operator_gate=OperatorGate(settings.admin_token),
        listener_reports=listener_reports,
        ticket_holders=TicketHolders(),
        captions=captions,
        clips=clips,
        x_directory=SpaceDirectory(spaces, store),
        audience_list=AudienceList(spaces, names),
        moderation=moderation,
        follows=follows,
        event_hub=event_hub,
        webhooks=webhooks,
        notifier=notifier,
        metrics_registry=CollectorRegistry(auto_describe=False),
        metrics_collector=NodeCollector(
            door, guard, lambda: room_figures(spaces.rooms), listener_reports, relayed
        ),
        listener_nodes=ListenerNodes(state, spaces.stage_url, NodeHealth(peers.answers)),
        relayed_programs=relayed,
        edge_hls=EdgeHls(spaces.stage_url, signer, node_id) if settings.role == EDGE else None,
    )
