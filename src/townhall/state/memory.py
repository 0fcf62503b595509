"""In-memory shared state: the embedded default for a single process.

Operations never await in the middle, so within one event loop each one is
atomic without locks.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from townhall.domain.stage import Stage
from townhall.state.base import StageChange


class MemoryState:
    def __init__(self) -> None:
        self._stages: dict[str, Stage] = {}
        self._reactions: dict[str, Counter[str]] = defaultdict(Counter)
        self._listeners: dict[str, dict[str, int]] = defaultdict(dict)

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

    async def add_reaction(self, space_id: str, emoji: str) -> None:
        self._reactions[space_id][emoji] += 1

    async def reactions(self, space_id: str) -> dict[str, int]:
        return dict(self._reactions.get(space_id, {}))

    async def report_listeners(self, space_id: str, node_id: str, count: int) -> None:
        self._listeners[space_id][node_id] = count

    async def listeners(self, space_id: str) -> int:
        return sum(self._listeners.get(space_id, {}).values())

    async def forget(self, space_id: str) -> None:
        self._stages.pop(space_id, None)
        self._listeners.pop(space_id, None)

    async def close(self) -> None:
        return None
