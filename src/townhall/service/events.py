"""Events one service tells others, through one small hub built before any of them.

Followers hear of a space scheduled or gone live (service/follows.py). The door
must forget a space's line when the space ends, and the connection guard
must tighten its per-address cap when the door turns attack mode on; but the spaces
service is built after the door (the door counts its listeners) and the guard before
both. A hub made first lets each be built with what it needs: no service holds
another only to call it back, and no callback is assigned after construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from townhall.domain.spaces import Space

SpaceEnded = Callable[[str], None]
SpaceChanged = Callable[["Space"], None]
"""A space was scheduled or went live: each handler queues its work and returns at once."""
AttackModeChanged = Callable[[bool], None]


class Events:
    """Who is told of what. Handlers are given at construction, or by a service's own
    constructor for itself (the door listens for ended spaces)."""

    def __init__(
        self,
        on_space_ended: Iterable[SpaceEnded] = (),
        on_attack_mode: Iterable[AttackModeChanged] = (),
    ) -> None:
        self._space_ended = list(on_space_ended)
        self._attack_mode = list(on_attack_mode)
        self._space_scheduled: list[SpaceChanged] = []
        self._space_live: list[SpaceChanged] = []

    def listen_space_ended(self, handler: SpaceEnded) -> None:
        self._space_ended.append(handler)

    def listen_attack_mode(self, handler: AttackModeChanged) -> None:
        self._attack_mode.append(handler)

    def listen_space_scheduled(self, handler: SpaceChanged) -> None:
        self._space_scheduled.append(handler)

    def listen_space_live(self, handler: SpaceChanged) -> None:
        self._space_live.append(handler)

    def space_scheduled(self, space: Space) -> None:
        """A space was created with a start date (followers are told)."""
        for handler in self._space_scheduled:
            handler(space)

    def space_live(self, space: Space) -> None:
        """A space went live (followers and reminded listeners are told)."""
        for handler in self._space_live:
            handler(space)

    def space_ended(self, space_id: str) -> None:
        """A space ended (on this node): per-space state elsewhere can go."""
        for handler in self._space_ended:
            handler(space_id)

    def attack_mode_changed(self, active: bool) -> None:
        for handler in self._attack_mode:
            handler(active)
