"""The seam between one node and many (cf. LiveKit's Router).

Everything that changes while a space is live and that every node must agree
on lives behind this Protocol: the space records' live fields, the stage
(roles, requests, invitations, mutes, removals), reaction totals, listener
counts per node, the waiting room's counters, attack mode, where each stage
lives and the registry of nodes. The in-memory backend serves a single
process; the Redis backend serves many nodes. The choice is made once, in
`townhall.app`, never as `if redis:` in business code.

A node may cache what it reads only while `healthy` is true: that is the
promise that every change published by another node reaches `on_change`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from townhall.domain.errors import Unavailable
from townhall.domain.moderation import AuditHead
from townhall.domain.spaces import Space, User
from townhall.domain.stage import Stage

StageChange = Callable[[Stage], None]
"""Mutates the stage it is given, or raises a DomainError to leave it as it was."""

ChangeListener = Callable[[str, str], None]
"""Called with (space id, id of the node that published the change)."""

ResyncListener = Callable[[], None]
"""Called when changes may have been missed (the subscription was lost and is back)."""

UserEventListener = Callable[[Sequence[str], bytes], object]
"""Called with (user ids, event) for every user event published by any node."""

ENDED_RECORD_TTL_S = 3_600.0
"""An ended space's record stays in State this long (late snapshots), then only the store has it."""
LISTENER_REPORT_TTL_S = 5.0
"""A listener count not reported again within this stops counting (a dead node's)."""
AUDIENCE_REPORT_MAX = 24
"""Signed-in listeners one node reports per space: what the room shows to everyone is a
few faces and a count, so no node's report (nor the union) grows with the crowd."""
MAX_SPACES_PER_NODE_REPORT = 20_000
"""Spaces one `report_node_listeners` call may carry: a stream worker's whole report
(at most 10,000 spaces, townhall.edge.reports) and the zeros of the spaces its previous
report named and this one does not."""
MAX_USERS_PER_EVENT = 1_000
"""User ids one `publish_user_event` may name (a notifier wave is at most this)."""
STATE_RETRY_AFTER_S = 2.0
"""What a refused client is told to wait while the shared state is unreachable."""


def unique_people(reports: Iterable[list[User]]) -> list[User]:
    """The nodes' audience reports as one list: each person once (a listener may hold
    streams on two nodes), in order, at most AUDIENCE_REPORT_MAX."""
    seen: dict[str, User] = {}
    for people in reports:
        for person in people:
            if len(seen) >= AUDIENCE_REPORT_MAX:
                return list(seen.values())
            seen.setdefault(person.id, person)
    return list(seen.values())
def refuse_oversized_event(user_ids: Sequence[str]) -> None:
    if len(user_ids) > MAX_USERS_PER_EVENT:
        raise ValueError(f"at most {MAX_USERS_PER_EVENT} users per event")


def refuse_oversized_report(counts: Mapping[str, int]) -> None:
    """Both backends bound one node report the same way."""
    if len(counts) > MAX_SPACES_PER_NODE_REPORT:
        raise ValueError(f"at most {MAX_SPACES_PER_NODE_REPORT} spaces in one node report")


class StateUnavailable(Unavailable):
    """The shared state cannot be reached: nothing that needs it can be decided now.

    A refusal, not a bug: the caller is told to retry shortly (the API answers 503 with
    Retry-After); listeners already streaming are not affected.
    """

    code = "state_unavailable"

    def __init__(self, message: str = "the shared state is unreachable; retry shortly") -> None:
        super().__init__(message, STATE_RETRY_AFTER_S)


@dataclass(frozen=True)
class NodeInfo:
    """One node as the registry knows it: what it is, where, how busy, when last heard."""

    node_id: str
    public_url: str
    role: str = "all"
    load: float = 0.0
    """Live-stream listeners the node serves (what placement compares)."""
    last_beat: float = 0.0
    """Unix time of the last heartbeat, set by the backend."""
    holds_stages: bool = True
    """An origin (role `all` or `origin`): spaces may be placed on it (nodes/placement.py)."""
    stages: int = 0
    """Live spaces whose stage runs on the node now."""
    cpu: float = 0.0
    """The node's process CPU since its previous heartbeat, in cores (1.0 = one core)."""
    stream_url: str = ""
    """Base URL of the node's live streams when they are not on `public_url` (its stream
    workers' port); empty means `public_url`."""


class State(Protocol):
    # -- change notification ---------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while every change published anywhere is delivered to this node."""

    def subscribe(self, on_change: ChangeListener, on_resync: ResyncListener) -> None:
        """Registers listeners; changes published from then on reach them."""

    async def start(self) -> None:
        """Connects and starts delivering changes."""

    async def publish(self, space_id: str, node_id: str) -> None:
        """Tells every node (this one included) that something about the space changed."""

    def listen_user_events(self, listener: UserEventListener) -> None:
        """Registers a listener for the events of signed-in users' pages (the node's
        EventHub): every event published from then on, by any node, reaches it."""

    async def publish_user_event(self, user_ids: Sequence[str], event: bytes) -> None:
        """Delivers `event` for these users to the listeners of every node (this one
        included): a page's event stream may be open on any node. At most
        MAX_USERS_PER_EVENT ids (else ValueError). Fire and forget: a node that misses
        it (its subscription was down) has the feed to catch up from."""

    # -- space records' live fields ----------------------------------------------------

    async def get_space(self, space_id: str) -> Space | None: ...

    async def put_space(self, space: Space) -> None:
        """Records a live space; an ended one is kept for ENDED_RECORD_TTL_S."""

    # -- the stage --------------------------------------------------------------------

    async def get_stage(self, space_id: str) -> Stage | None: ...

    async def put_stage(self, space_id: str, stage: Stage) -> None: ...

    async def update_stage(self, space_id: str, change: StageChange) -> Stage:
        """Atomic read-modify-write of the stage; returns the new stage.

        Raises KeyError when the space has no stage; whatever `change` raises
        propagates and nothing is written.
        """

    # -- counters -----------------------------------------------------------------------

    async def add_reaction(self, space_id: str, emoji: str) -> None: ...

    async def reactions(self, space_id: str) -> dict[str, int]: ...

    async def report_listeners(
        self, space_id: str, node_id: str, count: int, ttl_s: float = LISTENER_REPORT_TTL_S
    ) -> None:
        """This node's current listener count for the space; it is forgotten after
        `ttl_s` unless reported again, so a dead node's listeners stop counting."""

    async def report_node_listeners(
        self, node_id: str, counts: Mapping[str, int], ttl_s: float = LISTENER_REPORT_TTL_S
    ) -> None:
        """`report_listeners` for every space of one node's report at once (at most
        MAX_SPACES_PER_NODE_REPORT, else ValueError): one round trip, not one per space,
        so a stream worker's report every second costs the state one bounded update."""

    async def listeners(self, space_id: str) -> int:
        """The sum over the nodes whose report has not expired."""

    async def peak_listeners(self, space_id: str) -> int:
        """The highest sum any report has made (raised by `report_listeners`); kept after
        the end like the reaction totals, for the end-of-space summary."""

    async def report_audience(
        self,
        space_id: str,
        node_id: str,
        people: list[User],
        ttl_s: float = LISTENER_REPORT_TTL_S,
    ) -> None:
        """Signed-in listeners of the space on this node (the first AUDIENCE_REPORT_MAX
        kept, in order), replacing the node's last report; forgotten after `ttl_s` unless
        reported again, like the counts, and with the space."""

    async def audience(self, space_id: str) -> list[User]:
        """The fresh reports' people, each once, in the nodes' order, at most
        AUDIENCE_REPORT_MAX: the faces every listener's page shows."""

    # -- the waiting room (wired by the door) ----------------------------------------

    async def next_arrival(self, space_id: str) -> int:
        """The next number in the space's one arrival sequence (1, 2, ...), atomic."""

    async def advance_admitted(self, space_id: str, at_most: int) -> int:
        """Moves "admitted up to" forward by at most `at_most`, never past the arrival
        sequence, atomically; returns the new value."""

    async def waiting_counters(self, space_id: str) -> tuple[int, int]:
        """(arrival sequence, admitted up to)."""

    # -- attack mode --------------------------------------------------------------------

    async def set_attack_mode(self, mode: str, ttl_s: float) -> None:
        """The deployment's attack mode, forgotten after `ttl_s` unless set again."""

    async def attack_mode(self) -> str | None: ...

    # -- the audit log's head -------------------------------------------------------------

    async def advance_audit_head(self, head: AuditHead) -> None:
        """Remembers the audit chain's head outside its table, atomically, and only
        forward (a higher `seq` than the one kept): a deleted or rewritten tail of the
        table no longer matches it."""

    async def audit_head(self) -> AuditHead | None:
        """The furthest head recorded, or None if none was (a new or restarted memory state)."""

    # -- placement and nodes ------------------------------------------------------------

    async def place_stage(self, space_id: str, node_id: str) -> None:
        """The space's stage (mixer, encoder, fan-out) lives on this node."""

    async def stage_node(self, space_id: str) -> str | None: ...

    async def claim_stage(self, space_id: str, expected: str | None, node_id: str) -> bool:
        """Moves the space's stage to `node_id` only if it is still placed on `expected`
        (None: placed nowhere), atomically; False when another node moved it first. Two
        survivors of a dead origin both try: exactly one of them re-places the space."""

    async def beat(self, node: NodeInfo, ttl_s: float) -> None:
        """A node's heartbeat: it leaves the registry `ttl_s` after its last one."""

    async def node(self, node_id: str) -> NodeInfo | None: ...

    async def nodes(self) -> list[NodeInfo]: ...

    async def leave(self, node_id: str) -> None:
        """The node leaves the registry now (a graceful stop), not when its last
        heartbeat expires: no join or placement picks it meanwhile."""

    # -- the end ----------------------------------------------------------------------

    async def forget(self, space_id: str) -> None:
        """Drops every per-space structure of an ended space; its record, its reaction
        totals and its peak listeners expire with ENDED_RECORD_TTL_S instead (the
        end-of-space summary)."""

    async def close(self) -> None: ...
