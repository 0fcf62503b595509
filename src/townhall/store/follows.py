"""Follows, reminders and the notification feed, durable: one code path for SQLite
and PostgreSQL (SQLAlchemy Core on the store's own runner, see store/sql.py).

The fan-out never reads or writes one follower at a time: followers are read a page
at a time in key order (`follower_id` after the last one seen, which the primary key
serves without a sort), and a page of notifications is one multi-row INSERT. A
unique (user, space, kind) key makes the feed idempotent: a follower who also asked
for a reminder is told once, and a retried wave adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Table,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.types import TEXT

from townhall.store.base import Store
from townhall.store.schema import UtcTimestamp, big_integer, metadata

follows = Table(
    "follows",
    metadata,
    Column("followee_id", TEXT(), ForeignKey("users.id"), primary_key=True),
    Column("follower_id", TEXT(), ForeignKey("users.id"), primary_key=True),
    Column("created_at", UtcTimestamp(), nullable=False),
    Index("follows_by_follower", "follower_id"),
)
"""Primary key (followee, follower): a host's followers in key order, page by page."""

reminders = Table(
    "reminders",
    metadata,
    Column("space_id", TEXT(), ForeignKey("spaces.id"), primary_key=True),
    Column("user_id", TEXT(), ForeignKey("users.id"), primary_key=True),
    Column("created_at", UtcTimestamp(), nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    # BIGINT on PostgreSQL (a feed of millions of followers outgrows int4, and a client's
    # cursor may name any id up to MAX_FEED_CURSOR); SQLite's rowid is 64-bit already.
    Column(
        "id",
        big_integer(),
        primary_key=True,
        autoincrement=True,
    ),
    Column("user_id", TEXT(), nullable=False),
    Column("kind", TEXT(), nullable=False),
    Column("space_id", TEXT(), nullable=False),
    Column("actor_id", TEXT(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Index("notifications_once", "user_id", "space_id", "kind", unique=True),
    Index("notifications_by_user", "user_id", "id"),
)
"""No foreign keys here: one row per follower per event is the hot insert of the
fan-out, and the ids come from the follows table that has them."""

FOLLOW_TABLES = (follows, reminders, notifications)


@dataclass(frozen=True)
class StoredNotification:
    id: int
    user_id: str
    kind: str
    space_id: str
    actor_id: str
    created_at: datetime


class FollowStore(Protocol):
    async def follow(self, follower_id: str, followee_id: str, now: datetime) -> bool:
        """True if this is a new follow."""
        ...

    async def unfollow(self, follower_id: str, followee_id: str) -> bool: ...

    async def count_followers(self, followee_id: str) -> int: ...

    async def count_following(self, follower_id: str) -> int: ...

    async def is_following(self, follower_id: str, followee_id: str) -> bool: ...

    async def followers_after(self, followee_id: str, after: str, limit: int) -> list[str]:
        """Up to `limit` follower ids greater than `after` ("" for the first page)."""
        ...

    async def remind(self, space_id: str, user_id: str, now: datetime) -> bool: ...

    async def unremind(self, space_id: str, user_id: str) -> bool: ...

    async def count_reminders(self, space_id: str) -> int: ...

    async def is_reminded(self, space_id: str, user_id: str) -> bool: ...

    async def reminded_after(self, space_id: str, after: str, limit: int) -> list[str]: ...

    async def add_notifications(
        self, user_ids: Sequence[str], kind: str, space_id: str, actor_id: str, now: datetime
    ) -> list[str]:
        """One INSERT for the whole page; returns who had no such notification yet."""
        ...

    async def notifications_for(
        self, user_id: str, limit: int, before_id: int | None = None
    ) -> list[StoredNotification]:
        """Newest first."""
        ...

    async def forget_notifications_before(self, moment: datetime) -> int: ...


_FOLLOWERS_PAGE = (
    select(follows.c.follower_id)
    .where(
        follows.c.followee_id == bindparam("followee_id"),
        follows.c.follower_id > bindparam("after"),
    )
    .order_by(follows.c.follower_id)
    .limit(bindparam("limit"))
)
_REMINDED_PAGE = (
    select(reminders.c.user_id)
    .where(reminders.c.space_id == bindparam("space_id"), reminders.c.user_id > bindparam("after"))
    .order_by(reminders.c.user_id)
    .limit(bindparam("limit"))
)


def _count(statement: Any) -> Any:
    return lambda db: int(db.execute(statement).scalar_one())


class SqlFollowStore:
    """The FollowStore on the main store's connections (one database, one migration run)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
        self._insert_follow = insert(follows).on_conflict_do_nothing(
            index_elements=[follows.c.followee_id, follows.c.follower_id]
        )
        self._insert_reminder = insert(reminders).on_conflict_do_nothing(
            index_elements=[reminders.c.space_id, reminders.c.user_id]
        )
        self._insert_notifications = insert(notifications).on_conflict_do_nothing(
            index_elements=[notifications.c.user_id, notifications.c.space_id, notifications.c.kind]
        )
        self._insert_notifications_returning = self._insert_notifications.returning(
            notifications.c.user_id
        )
        """Run with a page of rows: SQLAlchemy sends it as multi-row INSERTs
        ("insertmanyvalues") from one cached compiled statement, RETURNING the new ones."""

    async def follow(self, follower_id: str, followee_id: str, now: datetime) -> bool:
        row = {"followee_id": followee_id, "follower_id": follower_id, "created_at": now}
        result = await self._store.run(lambda db: db.execute(self._insert_follow, row))
        return bool(result.rowcount)

    async def unfollow(self, follower_id: str, followee_id: str) -> bool:
        statement = delete(follows).where(
            follows.c.followee_id == followee_id, follows.c.follower_id == follower_id
        )
        result = await self._store.run(lambda db: db.execute(statement))
        return bool(result.rowcount)

    async def count_followers(self, followee_id: str) -> int:
        statement = select(func.count()).where(follows.c.followee_id == followee_id)
        return await self._store.run(_count(statement))

    async def count_following(self, follower_id: str) -> int:
        statement = select(func.count()).where(follows.c.follower_id == follower_id)
        return await self._store.run(_count(statement))

    async def is_following(self, follower_id: str, followee_id: str) -> bool:
        statement = select(func.count()).where(
            follows.c.followee_id == followee_id, follows.c.follower_id == follower_id
        )
        return bool(await self._store.run(_count(statement)))

    async def followers_after(self, followee_id: str, after: str, limit: int) -> list[str]:
        params = {"followee_id": followee_id, "after": after, "limit": max(0, limit)}
        return list(await self._store.run(lambda db: db.scalars(_FOLLOWERS_PAGE, params).all()))

    async def remind(self, space_id: str, user_id: str, now: datetime) -> bool:
        row = {"space_id": space_id, "user_id": user_id, "created_at": now}
        result = await self._store.run(lambda db: db.execute(self._insert_reminder, row))
        return bool(result.rowcount)

    async def unremind(self, space_id: str, user_id: str) -> bool:
        statement = delete(reminders).where(
            reminders.c.space_id == space_id, reminders.c.user_id == user_id
        )
        result = await self._store.run(lambda db: db.execute(statement))
        return bool(result.rowcount)

    async def count_reminders(self, space_id: str) -> int:
        statement = select(func.count()).where(reminders.c.space_id == space_id)
        return await self._store.run(_count(statement))

    async def is_reminded(self, space_id: str, user_id: str) -> bool:
        statement = select(func.count()).where(
            reminders.c.space_id == space_id, reminders.c.user_id == user_id
        )
        return bool(await self._store.run(_count(statement)))

    async def reminded_after(self, space_id: str, after: str, limit: int) -> list[str]:
        params = {"space_id": space_id, "after": after, "limit": max(0, limit)}
        return list(await self._store.run(lambda db: db.scalars(_REMINDED_PAGE, params).all()))

    async def add_notifications(
        self, user_ids: Sequence[str], kind: str, space_id: str, actor_id: str, now: datetime
    ) -> list[str]:
        if not user_ids:
            return []
        rows = [
            {
                "user_id": user_id,
                "kind": kind,
                "space_id": space_id,
                "actor_id": actor_id,
                "created_at": now,
            }
            for user_id in user_ids
        ]
        statement = self._insert_notifications_returning
        return list(await self._store.run(lambda db: db.execute(statement, rows).scalars().all()))

    async def notifications_for(
        self, user_id: str, limit: int, before_id: int | None = None
    ) -> list[StoredNotification]:
        query = select(notifications).where(notifications.c.user_id == user_id)
        if before_id is not None:
            query = query.where(notifications.c.id < before_id)
        query = query.order_by(notifications.c.id.desc()).limit(max(0, limit))
        rows = await self._store.run(lambda db: db.execute(query).all())
        return [
            StoredNotification(r.id, r.user_id, r.kind, r.space_id, r.actor_id, r.created_at)
            for r in rows
        ]

    async def forget_notifications_before(self, moment: datetime) -> int:
        statement = delete(notifications).where(notifications.c.created_at < moment)
        result = await self._store.run(lambda db: db.execute(statement))
        return int(result.rowcount)


def create_follow_tables(connection: Connection) -> None:
    """Migration step: the follows, reminders and notifications tables."""
    metadata.create_all(connection, tables=list(FOLLOW_TABLES), checkfirst=True)
