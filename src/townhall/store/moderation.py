"""Durable moderation: reports, decisions, moderators, suspensions, blocks, the audit log.

The tables live in the one schema (migration 3) and the statements are written once
for SQLite and PostgreSQL, run by the store's own runner. The audit log is append-only
by construction: its sequence number is the primary key, so two nodes appending at
once cannot both take the same place in the chain (the loser re-reads the head and
tries again), and nothing here updates or deletes an entry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Table,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.types import TEXT

from townhall.domain.moderation import (
    GENESIS_HASH,
    Action,
    ActionKind,
    AuditEntry,
    Report,
    ReportReason,
    Subject,
    chain_hash,
)
from townhall.domain.spaces import SpaceState
from townhall.store.schema import UtcTimestamp, big_integer, metadata, spaces, tokens

T = TypeVar("T")


class Run(Protocol):
    """Runs one operation on a connection: Store.run, or an engine's run."""

    def __call__(self, operation: Callable[[Connection], T], /) -> Awaitable[T]: ...

AUDIT_APPEND_ATTEMPTS = 20
"""Appends racing for the head that one append will wait out before failing (SQLite
files shared by processes; PostgreSQL appends queue on AUDIT_LOCK_KEY instead)."""
AUDIT_LOCK_KEY = 0x61756474
"""pg_advisory_lock key held while appending ("audt"): nodes append one at a time,
rather than all read the same head and all but one retry (measured: 8 writers
exhausted 20 retries without it, bench/audit_chain.py)."""
_LOCK_HEAD = text("SELECT pg_advisory_lock(:key)")
_UNLOCK_HEAD = text("SELECT pg_advisory_unlock(:key)")

reports = Table(
    "reports",
    metadata,
    Column("id", TEXT(), primary_key=True),
    Column("reporter_id", TEXT()),
    Column("subject", TEXT(), nullable=False),
    Column("subject_id", TEXT(), nullable=False),
    Column("reason", TEXT(), nullable=False),
    Column("details", TEXT(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("resolved_at", UtcTimestamp()),
    Column("action_id", TEXT()),
    Index("reports_queue", "resolved_at", "created_at"),
)

moderation_actions = Table(
    "moderation_actions",
    metadata,
    Column("id", TEXT(), primary_key=True),
    Column("kind", TEXT(), nullable=False),
    Column("target_id", TEXT(), nullable=False),
    Column("affected_user_id", TEXT(), nullable=False),
    Column("moderator", TEXT(), nullable=False),
    Column("ground", TEXT(), nullable=False),
    Column("explanation", TEXT(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("report_id", TEXT()),
    Index("actions_by_affected_user", "affected_user_id", "created_at"),
)

moderators = Table(
    "moderators",
    metadata,
    Column("user_id", TEXT(), ForeignKey("users.id"), primary_key=True),
    Column("granted_at", UtcTimestamp(), nullable=False),
)

suspensions = Table(
    "suspensions",
    metadata,
    Column("user_id", TEXT(), ForeignKey("users.id"), primary_key=True),
    Column("action_id", TEXT(), nullable=False),
    Column("since", UtcTimestamp(), nullable=False),
)

blocks = Table(
    "blocks",
    metadata,
    Column("host_id", TEXT(), ForeignKey("users.id"), primary_key=True),
    Column("user_id", TEXT(), primary_key=True),
    Column("created_at", UtcTimestamp(), nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    # BIGINT on PostgreSQL (migration 7): the chain outlives int4; SQLite's INTEGER is 64-bit.
    Column(
        "seq",
        big_integer(),
        primary_key=True,
        autoincrement=False,
    ),
    Column("entry", TEXT(), nullable=False),
    Column("prev_hash", TEXT(), nullable=False),
    Column("hash", TEXT(), nullable=False),
)

def widen_audit_seq(connection: Connection) -> None:
    """audit_log.seq becomes BIGINT on PostgreSQL (an int4 chain stops at 2**31 - 1);
    SQLite's INTEGER is 64-bit already. Idempotent, as every step is."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("ALTER TABLE audit_log ALTER COLUMN seq TYPE BIGINT"))


TABLES = (reports, moderation_actions, moderators, suspensions, blocks, audit_log)


class ModerationStore(Protocol):
    async def add_report(self, report: Report) -> None: ...

    async def open_reports(self, limit: int, offset: int = 0) -> list[Report]:
        """Unresolved reports, oldest first (the moderators' queue)."""

    async def get_report(self, report_id: str) -> Report | None: ...

    async def add_action(self, action: Action) -> None:
        """Records the decision and resolves its report, if it names one."""

    async def statements_for(self, user_id: str, limit: int) -> list[Action]:
        """Decisions affecting the user, newest first."""

    async def grant_moderator(self, user_id: str, at: datetime) -> None: ...

    async def revoke_moderator(self, user_id: str) -> None: ...

    async def is_moderator(self, user_id: str) -> bool: ...

    async def suspend(self, user_id: str, action_id: str, at: datetime) -> None:
        """Also deletes every token of the user (they are signed out everywhere)."""

    async def restore(self, user_id: str) -> None: ...

    async def suspension(self, user_id: str) -> str | None:
        """The id of the action that suspended the user, or None."""

    async def block(self, host_id: str, user_id: str, at: datetime) -> None: ...

    async def unblock(self, host_id: str, user_id: str) -> None: ...

    async def blocked_by(self, host_id: str, limit: int) -> set[str]: ...

    async def count_blocks(self, host_id: str) -> int: ...

    async def live_spaces_of(self, host_id: str) -> list[str]: ...

    async def append_audit(self, entry: str) -> AuditEntry:
        """Appends one entry to the chain and returns it with its hash."""

    async def audit_entries(
        self, after_seq: int = 0, limit: int | None = None
    ) -> list[AuditEntry]: ...

    async def transparency(self) -> tuple[dict[str, int], dict[str, int], list[float]]:
        """Reports by reason, restrictive actions by kind, seconds from each acted-on
        report to its action."""


def _report(row: Any) -> Report:
    return Report(
        id=row.id,
        reporter_id=row.reporter_id,
        subject=Subject(row.subject),
        subject_id=row.subject_id,
        reason=ReportReason(row.reason),
        details=row.details,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
        action_id=row.action_id,
    )


def _action(row: Any) -> Action:
    return Action(
        id=row.id,
        kind=ActionKind(row.kind),
        target_id=row.target_id,
        affected_user_id=row.affected_user_id,
        moderator=row.moderator,
        ground=ReportReason(row.ground),
        explanation=row.explanation,
        created_at=row.created_at,
        report_id=row.report_id,
    )


def _audit(row: Any) -> AuditEntry:
    return AuditEntry(row.seq, row.entry, row.prev_hash, row.hash)


def _append(entry: str) -> Callable[[Connection], AuditEntry]:
    def append(db: Connection) -> AuditEntry:
        if db.dialect.name != "postgresql":
            return _append_at_head(db, entry)  # one writer thread per process already
        db.execute(_LOCK_HEAD, {"key": AUDIT_LOCK_KEY})
        try:
            return _append_at_head(db, entry)
        finally:
            db.execute(_UNLOCK_HEAD, {"key": AUDIT_LOCK_KEY})

    return append


def _append_at_head(db: Connection, entry: str) -> AuditEntry:
    last = db.execute(
        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS_HASH)
    row = AuditEntry(seq, entry, prev, chain_hash(seq, prev, entry))
    db.execute(insert(audit_log).values(seq=seq, entry=entry, prev_hash=prev, hash=row.hash))
    return row


class SqlModerationStore:
    """ModerationStore over the store's runner (`Store.run`): the same engine,
    pool and unavailability handling as the rest of the store."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def add_report(self, report: Report) -> None:
        row = report.to_json() | {
            "created_at": report.created_at,
            "resolved_at": report.resolved_at,
        }
        await self._run(lambda db: db.execute(insert(reports).values(**row)))

    async def open_reports(self, limit: int, offset: int = 0) -> list[Report]:
        query = (
            select(reports)
            .where(reports.c.resolved_at.is_(None))
            .order_by(reports.c.created_at, reports.c.id)
            .limit(limit)
            .offset(offset)
        )
        return [_report(row) for row in await self._run(lambda db: db.execute(query).all())]

    async def get_report(self, report_id: str) -> Report | None:
        query = select(reports).where(reports.c.id == report_id)
        row = await self._run(lambda db: db.execute(query).first())
        return _report(row) if row else None

    async def add_action(self, action: Action) -> None:
        row = {
            "id": action.id,
            "kind": action.kind.value,
            "target_id": action.target_id,
            "affected_user_id": action.affected_user_id,
            "moderator": action.moderator,
            "ground": action.ground.value,
            "explanation": action.explanation,
            "created_at": action.created_at,
            "report_id": action.report_id,
        }
        await self._run(lambda db: db.execute(insert(moderation_actions).values(**row)))
        if action.report_id is not None:
            resolve = (
                update(reports)
                .where(reports.c.id == action.report_id, reports.c.resolved_at.is_(None))
                .values(resolved_at=action.created_at, action_id=action.id)
            )
            await self._run(lambda db: db.execute(resolve))

    async def statements_for(self, user_id: str, limit: int) -> list[Action]:
        query = (
            select(moderation_actions)
            .where(moderation_actions.c.affected_user_id == user_id)
            .order_by(moderation_actions.c.created_at.desc(), moderation_actions.c.id)
            .limit(limit)
        )
        return [_action(row) for row in await self._run(lambda db: db.execute(query).all())]

    async def grant_moderator(self, user_id: str, at: datetime) -> None:
        def grant(db: Connection) -> None:
            found = select(moderators.c.user_id).where(moderators.c.user_id == user_id)
            if db.execute(found).first():
                return
            db.execute(insert(moderators).values(user_id=user_id, granted_at=at))

        with contextlib.suppress(sa_exc.IntegrityError):  # granted at the same moment elsewhere
            await self._run(grant)

    async def revoke_moderator(self, user_id: str) -> None:
        statement = delete(moderators).where(moderators.c.user_id == user_id)
        await self._run(lambda db: db.execute(statement))

    async def is_moderator(self, user_id: str) -> bool:
        query = select(moderators.c.user_id).where(moderators.c.user_id == user_id)
        return await self._run(lambda db: db.execute(query).first()) is not None

    async def suspend(self, user_id: str, action_id: str, at: datetime) -> None:
        def suspend(db: Connection) -> None:
            db.execute(delete(suspensions).where(suspensions.c.user_id == user_id))
            db.execute(insert(suspensions).values(user_id=user_id, action_id=action_id, since=at))

        await self._run(suspend)
        revoke = delete(tokens).where(tokens.c.user_id == user_id)
        await self._run(lambda db: db.execute(revoke))

    async def restore(self, user_id: str) -> None:
        statement = delete(suspensions).where(suspensions.c.user_id == user_id)
        await self._run(lambda db: db.execute(statement))

    async def suspension(self, user_id: str) -> str | None:
        query = select(suspensions.c.action_id).where(suspensions.c.user_id == user_id)
        return await self._run(lambda db: db.execute(query).scalar())

    async def block(self, host_id: str, user_id: str, at: datetime) -> None:
        def block(db: Connection) -> None:
            found = select(blocks.c.user_id).where(
                blocks.c.host_id == host_id, blocks.c.user_id == user_id
            )
            if db.execute(found).first() is None:
                db.execute(insert(blocks).values(host_id=host_id, user_id=user_id, created_at=at))

        with contextlib.suppress(sa_exc.IntegrityError):  # the same block at the same moment
            await self._run(block)

    async def unblock(self, host_id: str, user_id: str) -> None:
        statement = delete(blocks).where(blocks.c.host_id == host_id, blocks.c.user_id == user_id)
        await self._run(lambda db: db.execute(statement))

    async def blocked_by(self, host_id: str, limit: int) -> set[str]:
        query = select(blocks.c.user_id).where(blocks.c.host_id == host_id).limit(limit)
        return set(await self._run(lambda db: db.scalars(query).all()))

    async def count_blocks(self, host_id: str) -> int:
        query = select(func.count()).select_from(blocks).where(blocks.c.host_id == host_id)
        return int(await self._run(lambda db: db.execute(query).scalar_one()))

    async def live_spaces_of(self, host_id: str) -> list[str]:
        query = select(spaces.c.id).where(
            spaces.c.host_id == host_id, spaces.c.state == SpaceState.LIVE.value
        )
        return list(await self._run(lambda db: db.scalars(query).all()))

    async def append_audit(self, entry: str) -> AuditEntry:
        for _ in range(AUDIT_APPEND_ATTEMPTS - 1):
            try:
                return await self._run(_append(entry))
            except sa_exc.IntegrityError:
                continue  # another node took this place in the chain: read the new head
        return await self._run(_append(entry))

    async def audit_entries(self, after_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
        query = select(audit_log).where(audit_log.c.seq > after_seq).order_by(audit_log.c.seq)
        if limit is not None:
            query = query.limit(limit)
        return [_audit(row) for row in await self._run(lambda db: db.execute(query).all())]

    async def transparency(self) -> tuple[dict[str, int], dict[str, int], list[float]]:
        by_reason = select(reports.c.reason, func.count()).group_by(reports.c.reason)
        by_kind = select(moderation_actions.c.kind, func.count()).group_by(
            moderation_actions.c.kind
        )
        acted = select(reports.c.created_at, reports.c.resolved_at).where(
            reports.c.resolved_at.is_not(None)
        )

        def read(db: Connection) -> tuple[dict[str, int], dict[str, int], list[float]]:
            reasons = {row[0]: int(row[1]) for row in db.execute(by_reason)}
            kinds = {row[0]: int(row[1]) for row in db.execute(by_kind)}
            seconds = [
                (row.resolved_at - row.created_at).total_seconds() for row in db.execute(acted)
            ]
            return reasons, kinds, seconds

        return await self._run(read)


__all__ = ["TABLES", "ModerationStore", "SqlModerationStore", "widen_audit_seq"]
