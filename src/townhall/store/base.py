"""What the control plane needs from durable storage.

Only the control plane talks to the store; the listener path (snapshot,
stream, HLS) reads memory and shared state. Every backend (SQLite, PostgreSQL)
implements this Protocol; a call that cannot reach the database raises
`StoreUnavailable` rather than hanging or leaking a driver error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy.engine import Connection

from townhall.domain.spaces import Space, SpaceState, User

T = TypeVar("T")


class Store(Protocol):
    dialect: str
    """SQLAlchemy's name of the database ("sqlite", "postgresql"): where SQL differs."""

    async def open(self) -> Store:
        """Connects and runs the pending migrations; built without I/O, opened at start."""

    async def create_user(self, user_id: str, username: str, password_hash: str) -> User:
        """Raises Conflict when the username (case-insensitive) is taken."""

    async def credentials(self, username: str) -> tuple[User, str] | None:
        """The user and their password hash, for sign-in (username case-insensitive)."""

    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    async def get_user(self, user_id: str) -> User | None: ...

    async def create_token(
        self, token_hash: str, user_id: str, kind: str, expires_at: datetime
    ) -> None: ...

    async def user_for_token(self, token_hash: str, now: datetime) -> User | None: ...

    async def delete_token(self, token_hash: str) -> None: ...

    async def save_space(self, space: Space) -> None:
        """Insert or update."""

    async def get_space(self, space_id: str) -> Space | None: ...

    async def list_spaces(
        self, states: Iterable[SpaceState], limit: int, offset: int = 0
    ) -> list[Space]:
        """Ordered live -> started_at DESC, scheduled -> scheduled_for ASC (created_at
        when none), ended -> ended_at DESC; then by id, so pages do not overlap."""

    async def count_spaces_by_host(self, host_id: str, states: Iterable[SpaceState]) -> int:
        """How many of the host's spaces are in `states` (the per-host cap)."""

    async def add_removal(self, space_id: str, user_id: str) -> None: ...

    async def removals(self, space_id: str) -> set[str]: ...

    async def run(self, operation: Callable[[Connection], T], *, idempotent: bool = True) -> T:
        """Runs `operation` on one of the store's connections, for the stores of other
        concepts that share its database and its migrations (store/clips.py, follows.py,
        moderation.py). An idempotent operation is tried once more when its pooled
        connection had died; an unreachable database raises StoreUnavailable."""

    async def close(self) -> None: ...
