"""The seam between one node and many (cf. LiveKit's Router).

Everything that changes while a space is live and that every node must agree
on lives behind this Protocol: the stage (roles, requests, mutes, removals),
reaction totals and listener counts. The in-memory backend serves a single
process; a Redis backend serves many nodes. The choice is made once, in
`townhall.app`, never as `if redis:` in business code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from townhall.domain.stage import Stage

StageChange = Callable[[Stage], None]
"""Mutates the stage it is given, or raises a DomainError to leave it as it was."""


class State(Protocol):
    async def get_stage(self, space_id: str) -> Stage | None: ...

    async def put_stage(self, space_id: str, stage: Stage) -> None: ...

    async def update_stage(self, space_id: str, change: StageChange) -> Stage:
        """Atomic read-modify-write of the stage; returns the new stage.

        Raises KeyError when the space has no stage; whatever `change` raises
        propagates and nothing is written.
        """

    async def add_reaction(self, space_id: str, emoji: str) -> None: ...

    async def reactions(self, space_id: str) -> dict[str, int]: ...

    async def report_listeners(self, space_id: str, node_id: str, count: int) -> None:
        """This node's current listener count for the space (nodes report, state sums)."""

    async def listeners(self, space_id: str) -> int: ...

    async def forget(self, space_id: str) -> None:
        """Drop everything live about an ended space."""

    async def close(self) -> None: ...
