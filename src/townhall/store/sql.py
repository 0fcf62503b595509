"""The store on SQLAlchemy Core: one code path for SQLite and PostgreSQL.

Every operation is a synchronous function over a Core `Connection`, built from
`schema` and written once; `engine` runs it on the right driver. Each call is one
autocommitted statement (upserts are INSERT ... ON CONFLICT, the same SQL on both
databases). Driver failures that mean "the database is not there" become
`StoreUnavailable`; a taken username becomes `Conflict`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, case, delete, func, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url

from townhall.domain.captions import CaptionsWithheld
from townhall.domain.errors import Conflict
from townhall.domain.spaces import Space, SpaceState, SpeakPolicy, User
from townhall.store import migrations
from townhall.store.engine import runner_for
from townhall.store.errors import StoreUnavailable
from townhall.store.schema import removals, spaces, tokens, users

T = TypeVar("T")
TOPIC_SEPARATOR = ","
"""Topics never hold one (domain/space_details.py)."""

log = logging.getLogger(__name__)

UNREACHABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
)
"""What drivers raise when the database is down, restarting, locked or too slow."""


def _connection_died(error: Exception) -> bool:
    """A driver error on a connection the server closed (SQLAlchemy then drops the pool)."""
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


_SPACES_WITH_HOST = select(
    spaces.c.id,
    spaces.c.title,
    spaces.c.state,
    spaces.c.created_at,
    spaces.c.scheduled_for,
    spaces.c.started_at,
    spaces.c.ended_at,
    spaces.c.record,
    spaces.c.speak_policy,
    spaces.c.recording_seconds,
    spaces.c.description,
    spaces.c.pinned_url,
    spaces.c.topics,
    spaces.c.captions,
    spaces.c.captions_withheld,
    users.c.id.label("host_id"),
    users.c.username.label("host_username"),
).select_from(spaces.join(users, users.c.id == spaces.c.host_id))

_STATE_RANK = case(
    (spaces.c.state == SpaceState.LIVE.value, 0),
    (spaces.c.state == SpaceState.SCHEDULED.value, 1),
    else_=2,
)
_NEWEST_FIRST = case(
    (spaces.c.state == SpaceState.LIVE.value, spaces.c.started_at),
    (spaces.c.state == SpaceState.ENDED.value, spaces.c.ended_at),
)
_SOONEST_FIRST = case(
    (
        spaces.c.state == SpaceState.SCHEDULED.value,
        func.coalesce(spaces.c.scheduled_for, spaces.c.created_at),
    )
)
LISTING_ORDER = (
    _STATE_RANK,
    _NEWEST_FIRST.desc().nulls_last(),
    _SOONEST_FIRST.asc().nulls_last(),
    spaces.c.created_at,
    spaces.c.id,
)
"""Live by newest start, scheduled by soonest start (a space ready to start without a
date by when it was made), ended by most recent end; then by id, so pages never overlap."""

_USER_COLUMNS = (users.c.id, users.c.username)
_GET_USER = select(*_USER_COLUMNS).where(users.c.id == bindparam("user_id"))
_CREDENTIALS = select(*_USER_COLUMNS, users.c.password_hash).where(
    func.lower(users.c.username) == func.lower(bindparam("username"))
)
_USER_FOR_TOKEN = (
    select(*_USER_COLUMNS)
    .select_from(tokens.join(users, users.c.id == tokens.c.user_id))
    .where(tokens.c.token_hash == bindparam("token_hash"), tokens.c.expires_at > bindparam("now"))
)
_GET_SPACE = _SPACES_WITH_HOST.where(spaces.c.id == bindparam("space_id"))
_REMOVALS = select(removals.c.user_id).where(removals.c.space_id == bindparam("space_id"))
"""Statements built once with bound parameters: SQLAlchemy then reuses their cache
key and compiled form instead of building a new statement on every call."""

_SPACE_FIELDS = (
    "title",
    "state",
    "scheduled_for",
    "started_at",
    "ended_at",
    "record",
    "speak_policy",
    "recording_seconds",
    "description",
    "pinned_url",
    "topics",
    "captions",
    "captions_withheld",
)
"""What saving a space again may change (id, host and created_at are fixed at insert)."""


def _upserts(
    insert: Callable[[Table], sqlite.Insert | postgresql.Insert],
) -> tuple[Any, Any, Any]:
    """INSERT ... ON CONFLICT for spaces (update), removals and tokens (nothing): the same
    SQL on SQLite and PostgreSQL, though each dialect has its own construct for it. All
    three can be retried safely (a token hash is 256 random bits: a conflict is a retry)."""
    save = insert(spaces)
    save_space = save.on_conflict_do_update(
        index_elements=[spaces.c.id], set_={name: save.excluded[name] for name in _SPACE_FIELDS}
    )
    add_removal = insert(removals).on_conflict_do_nothing(
        index_elements=[removals.c.space_id, removals.c.user_id]
    )
    insert_token = insert(tokens).on_conflict_do_nothing(index_elements=[tokens.c.token_hash])
    return save_space, add_removal, insert_token


def _space(row: Any) -> Space:
    """`row` is a Row of _SPACES_WITH_HOST (Row's type parameters differ across SQLAlchemy 2.x)."""
    return Space(
        id=row.id,
        title=row.title,
        host=User(row.host_id, row.host_username),
        state=SpaceState(row.state),
        created_at=row.created_at,
        scheduled_for=row.scheduled_for,
        started_at=row.started_at,
        ended_at=row.ended_at,
        record=bool(row.record),
        speak_policy=SpeakPolicy(row.speak_policy),
        recording_seconds=row.recording_seconds,
        description=row.description or "",
        pinned_url=row.pinned_url,
        topics=tuple(t for t in (row.topics or "").split(TOPIC_SEPARATOR) if t),
        captions=bool(row.captions),
        captions_withheld=CaptionsWithheld(row.captions_withheld)
        if row.captions_withheld
        else None,
    )


def _space_row(space: Space) -> dict[str, Any]:
    return {
        "id": space.id,
        "host_id": space.host.id,
        "created_at": space.created_at,
        "title": space.title,
        "state": space.state.value,
        "scheduled_for": space.scheduled_for,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "record": space.record,
        "speak_policy": space.speak_policy.value,
        "recording_seconds": space.recording_seconds,
        "description": space.description,
        "pinned_url": space.pinned_url,
        "topics": TOPIC_SEPARATOR.join(space.topics),
        "captions": space.captions,
        "captions_withheld": space.captions_withheld.value if space.captions_withheld else None,
    }


def _user(row: Any) -> User | None:
    return User(row.id, row.username) if row else None


class SqlStore:
    """Open with `await SqlStore(url).open()`, which also migrates the schema."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._runner = runner_for(url)
        self.dialect = self._runner.dialect
        self._save_space, self._add_removal, self._insert_token = _upserts(
            postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        )

    async def open(self) -> SqlStore:
        """Migrates first: a node must not serve on a schema it does not know. A store
        that cannot be reached stops the start with one clear line (password hidden)."""
        try:
            await self._runner.run(migrations.migrate)
        except UNREACHABLE as error:
            await self._runner.close()
            where = make_url(self.url).render_as_string(hide_password=True)
            raise StoreUnavailable(f"cannot reach the store at {where}: {error}") from error
        return self

    async def schema_versions(self) -> list[int]:
        """The migration steps applied to this database, in order."""
        return await self._run(migrations.applied_versions)

    async def _run(self, operation: Callable[[Connection], T], *, idempotent: bool = True) -> T:
        """Runs one operation. A pooled connection that died (the database restarted)
        is dropped with the rest of the pool and an idempotent operation is tried once
        more on a fresh one; what still cannot reach the database is StoreUnavailable."""
        try:
            return await self._runner.run(operation)
        except Exception as error:
            failure = error
        if idempotent and _connection_died(failure):
            try:
                return await self._runner.run(operation)
            except Exception as error:
                failure = error
        if isinstance(failure, UNREACHABLE) or _connection_died(failure):
            log.warning("store unavailable (%s): %s", self.dialect, failure)
            raise StoreUnavailable() from failure
        raise failure

    async def run(self, operation: Callable[[Connection], T], *, idempotent: bool = True) -> T:
        """The same, for the stores of other concepts on these connections (store/clips.py,
        store/moderation.py, store/follows.py)."""
        return await self._run(operation, idempotent=idempotent)

    # -- accounts --------------------------------------------------------------

    async def create_user(self, user_id: str, username: str, password_hash: str) -> User:
        row = {
            "id": user_id,
            "username": username,
            "password_hash": password_hash,
            "created_at": datetime.now(UTC),
        }
        try:
            await self._run(lambda db: db.execute(users.insert(), row), idempotent=False)
        except sa_exc.IntegrityError:
            raise Conflict("that username is taken", code="username_taken") from None
        return User(user_id, username)

    async def credentials(self, username: str) -> tuple[User, str] | None:
        params = {"username": username}
        row = await self._run(lambda db: db.execute(_CREDENTIALS, params).first())
        return (User(row.id, row.username), row.password_hash) if row else None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        statement = update(users).where(users.c.id == user_id).values(password_hash=password_hash)
        await self._run(lambda db: db.execute(statement))

    async def get_user(self, user_id: str) -> User | None:
        params = {"user_id": user_id}
        return _user(await self._run(lambda db: db.execute(_GET_USER, params).first()))

    async def create_token(
        self, token_hash: str, user_id: str, kind: str, expires_at: datetime
    ) -> None:
        row = {"token_hash": token_hash, "user_id": user_id, "kind": kind, "expires_at": expires_at}
        await self._run(lambda db: db.execute(self._insert_token, row))

    async def user_for_token(self, token_hash: str, now: datetime) -> User | None:
        params = {"token_hash": token_hash, "now": now}
        return _user(await self._run(lambda db: db.execute(_USER_FOR_TOKEN, params).first()))

    async def delete_token(self, token_hash: str) -> None:
        statement = delete(tokens).where(tokens.c.token_hash == token_hash)
        await self._run(lambda db: db.execute(statement))

    # -- spaces ------------------------------------------------------------------

    async def save_space(self, space: Space) -> None:
        """One upsert, so concurrent saves from two nodes cannot collide."""
        row = _space_row(space)
        await self._run(lambda db: db.execute(self._save_space, row))

    async def get_space(self, space_id: str) -> Space | None:
        params = {"space_id": space_id}
        row = await self._run(lambda db: db.execute(_GET_SPACE, params).first())
        return _space(row) if row else None

    async def list_spaces(
        self, states: Iterable[SpaceState], limit: int, offset: int = 0
    ) -> list[Space]:
        query = (
            _SPACES_WITH_HOST.where(spaces.c.state.in_([state.value for state in states]))
            .order_by(*LISTING_ORDER)
            .limit(max(0, limit))
            .offset(max(0, offset))
        )
        rows = await self._run(lambda db: db.execute(query).all())
        return [_space(row) for row in rows]

    async def count_spaces_by_host(self, host_id: str, states: Iterable[SpaceState]) -> int:
        query = (
            select(func.count())
            .select_from(spaces)
            .where(spaces.c.host_id == host_id, spaces.c.state.in_([s.value for s in states]))
        )
        return int(await self._run(lambda db: db.execute(query).scalar_one()))

    async def add_removal(self, space_id: str, user_id: str) -> None:
        """Idempotent: a second removal of the same person (even a concurrent one from
        another node) changes nothing."""
        row = {"space_id": space_id, "user_id": user_id}
        await self._run(lambda db: db.execute(self._add_removal, row))

    async def removals(self, space_id: str) -> set[str]:
        params = {"space_id": space_id}
        return set(await self._run(lambda db: db.scalars(_REMOVALS, params).all()))

    async def close(self) -> None:
        await self._runner.close()
