"""Clips in the durable store: one table, its Protocol and the one SQL implementation.

The clip's audio is a file (service/clips.py); the row says whose it is, which space
it came from and when it goes. Runs on the main store's connections (Store.run),
so SQLite and PostgreSQL share this code path and its migration (step 3).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Table,
    bindparam,
    delete,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.types import TEXT

from townhall.domain.clips import Clip, ClipSource
from townhall.store.base import Store
from townhall.store.schema import UtcTimestamp, metadata

clips = Table(
    "clips",
    metadata,
    Column("id", TEXT(), primary_key=True),
    Column("space_id", TEXT(), ForeignKey("spaces.id"), nullable=False),
    Column("creator_id", TEXT()),
    Column("source", TEXT(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("expires_at", UtcTimestamp(), nullable=False),
    Column("duration_s", Float(), nullable=False),
    Column("start_s", Float()),
    Column("node_id", TEXT()),  # migration 8 adds it to an older table
    Index("clips_by_expiry", "expires_at"),
    Index("clips_by_space", "space_id", "created_at"),
)

_GET = select(clips).where(clips.c.id == bindparam("clip_id"))


def add_clip_node_column(connection: Connection) -> None:
    """clips.node_id: which node's disk holds a clip's audio (a new database has it from
    step 3, whose table definition carries it)."""
    present = {column["name"] for column in inspect(connection).get_columns("clips")}
    if "node_id" not in present:
        connection.execute(text("ALTER TABLE clips ADD COLUMN node_id TEXT"))


class ClipStore(Protocol):
    async def add_clip(self, clip: Clip) -> None: ...

    async def get_clip(self, clip_id: str) -> Clip | None: ...

    async def delete_clip(self, clip_id: str) -> bool:
        """True when there was such a clip."""

    async def expired_clips(self, now: datetime, limit: int) -> list[Clip]:
        """Clips whose time is up, oldest expiry first, at most `limit`."""

    async def clips_of_space(self, space_id: str, limit: int) -> list[Clip]:
        """The newest first."""


def _clip(row: Any) -> Clip:
    return Clip(
        id=row.id,
        space_id=row.space_id,
        creator_id=row.creator_id,
        source=ClipSource(row.source),
        created_at=row.created_at,
        expires_at=row.expires_at,
        duration_s=row.duration_s,
        start_s=row.start_s,
        node_id=row.node_id,
    )


def _row(clip: Clip) -> dict[str, Any]:
    return {
        "id": clip.id,
        "space_id": clip.space_id,
        "creator_id": clip.creator_id,
        "source": clip.source.value,
        "created_at": clip.created_at,
        "expires_at": clip.expires_at,
        "duration_s": clip.duration_s,
        "start_s": clip.start_s,
        "node_id": clip.node_id,
    }


class SqlClipStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add_clip(self, clip: Clip) -> None:
        row = _row(clip)
        await self._store.run(lambda db: db.execute(clips.insert(), row), idempotent=False)

    async def get_clip(self, clip_id: str) -> Clip | None:
        params = {"clip_id": clip_id}
        row = await self._store.run(lambda db: db.execute(_GET, params).first())
        return _clip(row) if row else None

    async def delete_clip(self, clip_id: str) -> bool:
        statement = delete(clips).where(clips.c.id == clip_id)
        result = await self._store.run(lambda db: db.execute(statement).rowcount)
        return bool(result)

    async def expired_clips(self, now: datetime, limit: int) -> list[Clip]:
        query = (
            select(clips)
            .where(clips.c.expires_at <= now)
            .order_by(clips.c.expires_at, clips.c.id)
            .limit(max(0, limit))
        )
        rows = await self._store.run(lambda db: db.execute(query).all())
        return [_clip(row) for row in rows]

    async def clips_of_space(self, space_id: str, limit: int) -> list[Clip]:
        query = (
            select(clips)
            .where(clips.c.space_id == space_id)
            .order_by(clips.c.created_at.desc(), clips.c.id)
            .limit(max(0, limit))
        )
        rows = await self._store.run(lambda db: db.execute(query).all())
        return [_clip(row) for row in rows]
