"""The store on SQLAlchemy Core: one code path for SQLite and PostgreSQL.

Every query is built once from `schema`; the engine (see `engine`) is the only
place that knows the dialect. Driver failures that mean "the database is not
there" become `StoreUnavailable`; a taken username becomes `Conflict`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, case, delete, func, insert, literal, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from townhall.domain.errors import Conflict
from townhall.domain.spaces import Space, SpaceState, SpeakPolicy, User
from townhall.store import migrations
from townhall.store.engine import create_engine_for
from townhall.store.errors import StoreUnavailable
from townhall.store.schema import removals, spaces, tokens, users

log = logging.getLogger(__name__)

UNREACHABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
)
"""What drivers raise when the database is down, restarting or too slow to answer."""

_SPACE_COLUMNS = (
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
    users.c.id.label("host_id"),
    users.c.username.label("host_username"),
)
_SPACES_WITH_HOST = select(*_SPACE_COLUMNS).select_from(
    spaces.join(users, users.c.id == spaces.c.host_id)
)

_STATE_RANK = case(
    (spaces.c.state == SpaceState.LIVE.value, 0),
    (spaces.c.state == SpaceState.SCHEDULED.value, 1),
    else_=2,
)
_NEWEST_FIRST = case(
    (spaces.c.state == SpaceState.LIVE.value, spaces.c.started_at),
    (spaces.c.state == SpaceState.ENDED.value, spaces.c.ended_at),
)
_SOONEST_FIRST = case((spaces.c.state == SpaceState.SCHEDULED.value, spaces.c.scheduled_for))
LISTING_ORDER = (
    _STATE_RANK,
    _NEWEST_FIRST.desc().nulls_last(),
    _SOONEST_FIRST.asc().nulls_last(),
    spaces.c.created_at,
    spaces.c.id,
)
"""Live by newest start, scheduled by soonest start, ended by most recent end."""


def _space(row: Row[Any]) -> Space:
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
    )


def _space_fields(space: Space) -> dict[str, Any]:
    """Everything an update may change (id, host and created_at are fixed at insert)."""
    return {
        "title": space.title,
        "state": space.state.value,
        "scheduled_for": space.scheduled_for,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "record": space.record,
        "speak_policy": space.speak_policy.value,
        "recording_seconds": space.recording_seconds,
    }


class SqlStore:
    """Open with `await SqlStore(url).open()`, which also migrates the schema."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine = create_engine_for(url)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def open(self) -> SqlStore:
        """Migrates first: a node must not serve on a schema it does not know."""
        await migrations.migrate(self._engine)
        return self

    async def schema_versions(self) -> list[int]:
        """The migration steps applied to this database, in order."""
        return await migrations.applied_versions(self._engine)

    @contextlib.asynccontextmanager
    async def _unavailable_as_domain_error(self) -> AsyncIterator[None]:
        try:
            yield
        except UNREACHABLE as error:
            log.warning("store unavailable (%s): %s", self.dialect, error)
            raise StoreUnavailable() from error

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        async with self._unavailable_as_domain_error(), self._engine.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        async with self._unavailable_as_domain_error(), self._engine.begin() as connection:
            yield connection

    # -- accounts --------------------------------------------------------------

    async def create_user(self, user_id: str, username: str, password_hash: str) -> User:
        try:
            async with self._writing() as db:
                await db.execute(
                    insert(users).values(
                        id=user_id,
                        username=username,
                        password_hash=password_hash,
                        created_at=datetime.now(UTC),
                    )
                )
        except sa_exc.IntegrityError:
            raise Conflict("that username is taken", code="username_taken") from None
        return User(user_id, username)

    async def credentials(self, username: str) -> tuple[User, str] | None:
        query = select(users.c.id, users.c.username, users.c.password_hash).where(
            func.lower(users.c.username) == func.lower(literal(username))
        )
        async with self._reading() as db:
            row = (await db.execute(query)).first()
        return (User(row.id, row.username), row.password_hash) if row else None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self._writing() as db:
            await db.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )

    async def get_user(self, user_id: str) -> User | None:
        async with self._reading() as db:
            row = (
                await db.execute(select(users.c.id, users.c.username).where(users.c.id == user_id))
            ).first()
        return User(row.id, row.username) if row else None

    async def create_token(
        self, token_hash: str, user_id: str, kind: str, expires_at: datetime
    ) -> None:
        async with self._writing() as db:
            await db.execute(
                insert(tokens).values(
                    token_hash=token_hash, user_id=user_id, kind=kind, expires_at=expires_at
                )
            )

    async def user_for_token(self, token_hash: str, now: datetime) -> User | None:
        query = (
            select(users.c.id, users.c.username)
            .select_from(tokens.join(users, users.c.id == tokens.c.user_id))
            .where(and_(tokens.c.token_hash == token_hash, tokens.c.expires_at > now))
        )
        async with self._reading() as db:
            row = (await db.execute(query)).first()
        return User(row.id, row.username) if row else None

    async def delete_token(self, token_hash: str) -> None:
        async with self._writing() as db:
            await db.execute(delete(tokens).where(tokens.c.token_hash == token_hash))

    # -- spaces ------------------------------------------------------------------

    async def save_space(self, space: Space) -> None:
        """An update first, an insert when there was nothing to update: the same two
        statements on every dialect (no dialect-specific upsert)."""
        async with self._writing() as db:
            await db.run_sync(self._save_space, space)

    @staticmethod
    def _save_space(db: Connection, space: Space) -> None:
        fields = _space_fields(space)
        updated = db.execute(update(spaces).where(spaces.c.id == space.id).values(**fields))
        if updated.rowcount == 0:
            db.execute(
                insert(spaces).values(
                    id=space.id, host_id=space.host.id, created_at=space.created_at, **fields
                )
            )

    async def get_space(self, space_id: str) -> Space | None:
        async with self._reading() as db:
            row = (await db.execute(_SPACES_WITH_HOST.where(spaces.c.id == space_id))).first()
        return _space(row) if row else None

    async def list_spaces(
        self, states: Iterable[SpaceState], limit: int, offset: int = 0
    ) -> list[Space]:
        wanted = [state.value for state in states]
        query = (
            _SPACES_WITH_HOST.where(spaces.c.state.in_(wanted))
            .order_by(*LISTING_ORDER)
            .limit(max(0, limit))
            .offset(max(0, offset))
        )
        async with self._reading() as db:
            rows = (await db.execute(query)).all()
        return [_space(row) for row in rows]

    async def count_spaces_by_host(self, host_id: str, states: Iterable[SpaceState]) -> int:
        query = (
            select(func.count())
            .select_from(spaces)
            .where(spaces.c.host_id == host_id, spaces.c.state.in_([s.value for s in states]))
        )
        async with self._reading() as db:
            return int((await db.execute(query)).scalar_one())

    async def add_removal(self, space_id: str, user_id: str) -> None:
        """Idempotent: a second removal of the same person (even a concurrent one from
        another node) changes nothing."""
        try:
            async with self._writing() as db:
                await db.execute(insert(removals).values(space_id=space_id, user_id=user_id))
        except sa_exc.IntegrityError:
            if user_id not in await self.removals(space_id):
                raise

    async def removals(self, space_id: str) -> set[str]:
        async with self._reading() as db:
            rows = await db.scalars(
                select(removals.c.user_id).where(removals.c.space_id == space_id)
            )
            return set(rows)

    async def close(self) -> None:
        await self._engine.dispose()
