"""In-memory shared state: the embedded default for a single process.

Operations never await in the middle, so within one event loop each one is
atomic without locks. Changes are delivered to this process's own listeners
(there is no other node to tell). Everything per space goes in `forget`;
what expires is dropped when it is next read or when the space is forgotten.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from townhall.domain.moderation import AuditHead
from townhall.domain.spaces import Space, SpaceState, User
from townhall.domain.stage import Stage
from townhall.state.base import (
    AUDIENCE_REPORT_MAX,
    ENDED_RECORD_TTL_S,
    LISTENER_REPORT_TTL_S,
    ChangeListener,
    NodeInfo,
    ResyncListener,
    StageChange,
    UserEventListener,
    refuse_oversized_event,
    refuse_oversized_report,
    unique_people,
)

MAX_ENDED_RECORDS = 10_000
"""Ended records kept for late readers; past this the oldest go (the store has them)."""


@dataclass(frozen=True)
class _EndedTotals:
    """What an ended space's summary shows, kept as long as its record."""

    reactions: Counter[str]
    peak_listeners: int
    expiry: float


class MemoryState:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._on_change: list[ChangeListener] = []
        self._on_user_event: list[UserEventListener] = []
        self._spaces: dict[str, tuple[Space, float]] = {}
        """Space id -> (record, expiry as unix time; inf while not ended)."""
        self._stages: dict[str, Stage] = {}
        self._reactions: dict[str, Counter[str]] = {}
        self._peaks: dict[str, int] = {}
        """Live space id -> the highest listener sum reported."""
        self._ended: dict[str, _EndedTotals] = {}
        """Ended space id -> its final totals, oldest first, at most MAX_ENDED_RECORDS."""
        self._listeners: dict[str, dict[str, tuple[int, float]]] = {}
        """Space id -> node id -> (count, expiry)."""
        self._audiences: dict[str, dict[str, tuple[list[User], float]]] = {}
        """Space id -> node id -> (signed-in listeners, at most AUDIENCE_REPORT_MAX; expiry)."""
        self._arrivals: dict[str, int] = {}
        self._admitted: dict[str, int] = {}
        self._attack_mode: tuple[str, float] | None = None
        self._placement: dict[str, str] = {}
        self._audit_head: AuditHead | None = None
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}

    # -- change notification ---------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return True

    def subscribe(self, on_change: ChangeListener, on_resync: ResyncListener) -> None:
        self._on_change.append(on_change)

    async def start(self) -> None:
        return None

    async def publish(self, space_id: str, node_id: str) -> None:
        for listener in self._on_change:
            listener(space_id, node_id)

    def listen_user_events(self, listener: UserEventListener) -> None:
        self._on_user_event.append(listener)

    async def publish_user_event(self, user_ids: Sequence[str], event: bytes) -> None:
        refuse_oversized_event(user_ids)
        for listener in self._on_user_event:
            listener(user_ids, event)

    # -- records ----------------------------------------------------------------------

    async def get_space(self, space_id: str) -> Space | None:
        found = self._spaces.get(space_id)
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._spaces[space_id]
            return None
        return found[0]

    async def put_space(self, space: Space) -> None:
        expiry = float("inf")
        if space.state is SpaceState.ENDED:
            expiry = self._clock() + ENDED_RECORD_TTL_S
        self._spaces.pop(space.id, None)
        self._spaces[space.id] = (space, expiry)
        if len(self._spaces) > MAX_ENDED_RECORDS:
            self._drop_oldest_ended()

    def _drop_oldest_ended(self) -> None:
        for space_id, (_, expiry) in list(self._spaces.items()):
            if expiry != float("inf"):
                del self._spaces[space_id]
                return

    # -- the stage --------------------------------------------------------------------

    async def get_stage(self, space_id: str) -> Stage | None:
        stage = self._stages.get(space_id)
        return Stage.from_json(stage.to_json()) if stage else None

    async def put_stage(self, space_id: str, stage: Stage) -> None:
        self._stages[space_id] = Stage.from_json(stage.to_json())

    async def update_stage(self, space_id: str, change: StageChange) -> Stage:
        current = self._stages[space_id]
        draft = Stage.from_json(current.to_json())
        change(draft)
        self._stages[space_id] = draft
        return Stage.from_json(draft.to_json())

    # -- counters -----------------------------------------------------------------------

    async def add_reaction(self, space_id: str, emoji: str) -> None:
        self._reactions.setdefault(space_id, Counter())[emoji] += 1

    async def reactions(self, space_id: str) -> dict[str, int]:
        ended = self._ended_totals(space_id)
        if ended is not None:
            return dict(ended.reactions)
        return dict(self._reactions.get(space_id, {}))

    def _ended_totals(self, space_id: str) -> _EndedTotals | None:
        ended = self._ended.get(space_id)
        if ended is not None and ended.expiry <= self._clock():
            del self._ended[space_id]
            return None
        return ended

    async def report_listeners(
        self, space_id: str, node_id: str, count: int, ttl_s: float = LISTENER_REPORT_TTL_S
    ) -> None:
        self._listeners.setdefault(space_id, {})[node_id] = (count, self._clock() + ttl_s)
        total = await self.listeners(space_id)
        self._peaks[space_id] = max(self._peaks.get(space_id, 0), total)

    async def report_node_listeners(
        self, node_id: str, counts: Mapping[str, int], ttl_s: float = LISTENER_REPORT_TTL_S
    ) -> None:
        refuse_oversized_report(counts)
        for space_id, count in counts.items():
            await self.report_listeners(space_id, node_id, count, ttl_s)

    async def peak_listeners(self, space_id: str) -> int:
        ended = self._ended_totals(space_id)
        if ended is not None:
            return ended.peak_listeners
        return self._peaks.get(space_id, 0)

    async def listeners(self, space_id: str) -> int:
        reports = self._listeners.get(space_id, {})
        now = self._clock()
        for node_id in [node for node, (_, expiry) in reports.items() if expiry <= now]:
            del reports[node_id]
        return sum(count for count, _ in reports.values())

    async def report_audience(
        self,
        space_id: str,
        node_id: str,
        people: list[User],
        ttl_s: float = LISTENER_REPORT_TTL_S,
    ) -> None:
        report = (list(people[:AUDIENCE_REPORT_MAX]), self._clock() + ttl_s)
        self._audiences.setdefault(space_id, {})[node_id] = report

    async def audience(self, space_id: str) -> list[User]:
        reports = self._audiences.get(space_id, {})
        now = self._clock()
        for node_id in [node for node, (_, expiry) in reports.items() if expiry <= now]:
            del reports[node_id]
        return unique_people(people for people, _ in reports.values())

    # -- the waiting room ---------------------------------------------------------------

    async def next_arrival(self, space_id: str) -> int:
        self._arrivals[space_id] = self._arrivals.get(space_id, 0) + 1
        return self._arrivals[space_id]

    async def advance_admitted(self, space_id: str, at_most: int) -> int:
        admitted = self._admitted.get(space_id, 0)
        admitted = max(admitted, min(self._arrivals.get(space_id, 0), admitted + at_most))
        self._admitted[space_id] = admitted
        return admitted

    async def waiting_counters(self, space_id: str) -> tuple[int, int]:
        return self._arrivals.get(space_id, 0), self._admitted.get(space_id, 0)

    # -- attack mode --------------------------------------------------------------------

    async def set_attack_mode(self, mode: str, ttl_s: float) -> None:
        self._attack_mode = (mode, self._clock() + ttl_s)

    async def attack_mode(self) -> str | None:
        if self._attack_mode is None or self._attack_mode[1] <= self._clock():
            self._attack_mode = None
            return None
        return self._attack_mode[0]

    # -- the audit log's head -------------------------------------------------------------

    async def advance_audit_head(self, head: AuditHead) -> None:
        if self._audit_head is None or head.seq > self._audit_head.seq:
            self._audit_head = head

    async def audit_head(self) -> AuditHead | None:
        return self._audit_head

    # -- placement and nodes ------------------------------------------------------------

    async def place_stage(self, space_id: str, node_id: str) -> None:
        self._placement[space_id] = node_id

    async def stage_node(self, space_id: str) -> str | None:
        return self._placement.get(space_id)

    async def claim_stage(self, space_id: str, expected: str | None, node_id: str) -> bool:
        if self._placement.get(space_id) != expected:
            return False
        self._placement[space_id] = node_id
        return True

    async def beat(self, node: NodeInfo, ttl_s: float) -> None:
        now = self._clock()
        self._nodes[node.node_id] = (replace(node, last_beat=now), now + ttl_s)

    async def node(self, node_id: str) -> NodeInfo | None:
        found = self._nodes.get(node_id)
        if found is None or found[1] <= self._clock():
            self._nodes.pop(node_id, None)
            return None
        return found[0]

    async def nodes(self) -> list[NodeInfo]:
        now = self._clock()
        for node_id in [n for n, (_, expiry) in self._nodes.items() if expiry <= now]:
            del self._nodes[node_id]
        return [info for info, _ in self._nodes.values()]

    async def leave(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    # -- the end ----------------------------------------------------------------------

    async def forget(self, space_id: str) -> None:
        for per_space in (
            self._stages,
            self._listeners,
            self._audiences,
            self._arrivals,
            self._admitted,
            self._placement,
        ):
            per_space.pop(space_id, None)
        totals = self._reactions.pop(space_id, None) or Counter()
        peak = self._peaks.pop(space_id, 0)
        if totals or peak:  # kept, like the ended record, for the end-of-space summary
            self._ended.pop(space_id, None)
            expiry = self._clock() + ENDED_RECORD_TTL_S
            self._ended[space_id] = _EndedTotals(totals, peak, expiry)
            if len(self._ended) > MAX_ENDED_RECORDS:
                del self._ended[next(iter(self._ended))]

    async def close(self) -> None:
        return None
