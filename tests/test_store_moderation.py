"""The ModerationStore contract on SQLite and a real PostgreSQL, and the audit chain
verified and broken by editing and deleting rows behind the application's back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from townhall.domain.moderation import (
    Action,
    ActionKind,
    Report,
    ReportReason,
    Subject,
    audit_entry_text,
    chain_hash,
    verify_chain,
)
from townhall.domain.spaces import Space, SpaceState
from townhall.store import SqlStore
from townhall.store.moderation import SqlModerationStore, widen_audit_seq

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONCURRENT = 400
WRITERS = 8
"""Writers racing for the head of the chain, each appending its share in turn."""


@pytest.fixture
def moderation(store: SqlStore) -> SqlModerationStore:
    return SqlModerationStore(store.run)


def _report(report_id: str, reason: ReportReason, at: datetime) -> Report:
    return Report(report_id, None, Subject.USER, "u-target", reason, "details", at)


def _action(action_id: str, kind: ActionKind, at: datetime, report_id: str | None) -> Action:
    return Action(action_id, kind, "u-target", "u-target", "operator", ReportReason.SPAM,
                  "because", at, report_id)  # fmt: skip


async def _chain(moderation: SqlModerationStore, n: int) -> None:
    for i in range(n):
        entry = audit_entry_text(T0 + timedelta(seconds=i), "operator", "end_space", f"s{i}", {})
        await moderation.append_audit(entry)


async def test_the_queue_holds_open_reports_oldest_first_until_acted_on(
    moderation: SqlModerationStore,
) -> None:
    await moderation.add_report(_report("r2", ReportReason.HATE, T0 + timedelta(minutes=1)))
    await moderation.add_report(_report("r1", ReportReason.SPAM, T0))
    assert [r.id for r in await moderation.open_reports(10)] == ["r1", "r2"]
    acted_at = T0 + timedelta(minutes=10)
    await moderation.add_action(_action("a1", ActionKind.SUSPEND_USER, acted_at, "r1"))
    assert [r.id for r in await moderation.open_reports(10)] == ["r2"]
    resolved = await moderation.get_report("r1")
    assert resolved is not None and resolved.action_id == "a1"
    assert resolved.resolved_at == acted_at
    by_reason, by_kind, seconds = await moderation.transparency()
    assert by_reason == {"spam": 1, "hate": 1}
    assert by_kind == {"suspend_user": 1}
    assert seconds == [600.0]


async def test_statements_are_the_decisions_that_affect_a_user(
    moderation: SqlModerationStore,
) -> None:
    await moderation.add_action(_action("a1", ActionKind.SUSPEND_USER, T0, None))
    later = T0 + timedelta(hours=1)
    await moderation.add_action(_action("a2", ActionKind.RESTORE_USER, later, None))
    assert [a.id for a in await moderation.statements_for("u-target", 10)] == ["a2", "a1"]
    assert await moderation.statements_for("someone-else", 10) == []


async def test_suspending_revokes_every_token_and_restoring_lifts_it(
    store: SqlStore, moderation: SqlModerationStore
) -> None:
    user = await store.create_user("u1", "alice", "h")
    await store.create_token("t1", user.id, "api", T0 + timedelta(days=1))
    await store.create_token("t2", user.id, "session", T0 + timedelta(days=1))
    await moderation.suspend(user.id, "a1", T0)
    assert await moderation.suspension(user.id) == "a1"
    assert await store.user_for_token("t1", T0) is None
    assert await store.user_for_token("t2", T0) is None
    await moderation.restore(user.id)
    assert await moderation.suspension(user.id) is None


async def test_blocks_moderators_and_a_hosts_live_spaces(
    store: SqlStore, moderation: SqlModerationStore
) -> None:
    host = await store.create_user("h1", "host", "h")
    await store.save_space(Space("s1", "Live", host, SpaceState.LIVE, T0, started_at=T0))
    await store.save_space(Space("s2", "Later", host, SpaceState.SCHEDULED, T0))
    assert await moderation.live_spaces_of(host.id) == ["s1"]
    await moderation.block(host.id, "u2", T0)
    await moderation.block(host.id, "u2", T0)  # twice is once
    assert await moderation.blocked_by(host.id, 10) == {"u2"}
    assert await moderation.count_blocks(host.id) == 1
    await moderation.unblock(host.id, "u2")
    assert await moderation.blocked_by(host.id, 10) == set()
    assert not await moderation.is_moderator(host.id)
    await moderation.grant_moderator(host.id, T0)
    await moderation.grant_moderator(host.id, T0)
    assert await moderation.is_moderator(host.id)
    await moderation.revoke_moderator(host.id)
    assert not await moderation.is_moderator(host.id)


async def test_the_audit_chain_verifies_and_concurrent_appends_do_not_fork_it(
    moderation: SqlModerationStore,
) -> None:
    entries = [
        audit_entry_text(T0, f"moderator-{i}", "end_space", "s", {}) for i in range(CONCURRENT)
    ]

    async def writer(mine: list[str]) -> None:
        for entry in mine:
            await moderation.append_audit(entry)

    await asyncio.gather(*(writer(entries[w::WRITERS]) for w in range(WRITERS)))
    chain = await moderation.audit_entries()
    assert [entry.seq for entry in chain] == list(range(1, CONCURRENT + 1))
    assert sorted(entry.entry for entry in chain) == sorted(entries)
    check = verify_chain(chain)
    assert check.ok and check.entries == CONCURRENT and check.head == chain[-1].hash


async def test_a_changed_entry_is_detected(store: SqlStore, moderation: SqlModerationStore) -> None:
    await _chain(moderation, 5)
    forged = audit_entry_text(T0, "operator", "end_space", "someone-else", {})
    await store.run(
        lambda db: db.execute(text("UPDATE audit_log SET entry = :e WHERE seq = 3"), {"e": forged})
    )
    check = verify_chain(await moderation.audit_entries())
    assert not check.ok
    assert check.broken_at == 3 and check.problem == "the entry was changed"


async def test_a_changed_entry_with_a_recomputed_hash_breaks_the_next_link(
    store: SqlStore, moderation: SqlModerationStore
) -> None:
    await _chain(moderation, 5)
    chain = await moderation.audit_entries()
    forged = audit_entry_text(T0, "operator", "end_space", "someone-else", {})
    new_hash = chain_hash(3, chain[1].hash, forged)
    await store.run(
        lambda db: db.execute(
            text("UPDATE audit_log SET entry = :e, hash = :h WHERE seq = 3"),
            {"e": forged, "h": new_hash},
        )
    )
    check = verify_chain(await moderation.audit_entries())
    assert not check.ok and check.broken_at == 4 and check.problem == "the link is broken"


async def test_a_deleted_entry_is_detected(store: SqlStore, moderation: SqlModerationStore) -> None:
    await _chain(moderation, 5)
    await store.run(lambda db: db.execute(text("DELETE FROM audit_log WHERE seq = 2")))
    check = verify_chain(await moderation.audit_entries())
    assert not check.ok and check.broken_at == 3 and check.problem == "an entry is missing"


async def test_the_chain_checked_a_page_at_a_time_is_the_same(
    moderation: SqlModerationStore,
) -> None:
    await _chain(moderation, 7)
    check = verify_chain([])
    while check.ok and (page := await moderation.audit_entries(check.entries, 3)):
        check = verify_chain(page, check)
    assert check == verify_chain(await moderation.audit_entries())
    assert check.ok and check.entries == 7


async def test_the_chain_goes_past_int4(store: SqlStore, moderation: SqlModerationStore) -> None:
    """audit_log.seq is BIGINT on PostgreSQL (migration 7): an int4 column refused this.
    The table is first put back as an older release made it, then the step widens it."""
    if store.dialect == "postgresql":
        int4 = text("ALTER TABLE audit_log ALTER COLUMN seq TYPE INTEGER")
        await store.run(lambda db: db.execute(int4))
    await store.run(widen_audit_seq)
    far = 2**31 - 1
    prev = "f" * 64
    entry = audit_entry_text(T0, "operator", "end_space", "s", {})
    await store.run(
        lambda db: db.execute(
            text("INSERT INTO audit_log (seq, entry, prev_hash, hash) VALUES (:s, :e, :p, :h)"),
            {"s": far, "e": entry, "p": prev, "h": chain_hash(far, prev, entry)},
        )
    )
    appended = await moderation.append_audit(entry)
    assert appended.seq == far + 1
    assert [e.seq for e in await moderation.audit_entries(far)] == [far + 1]


async def test_users_in_reports_need_not_exist_yet(moderation: SqlModerationStore) -> None:
    """Reports keep ids as given (the service checks them): a deleted user's reports stay."""
    await moderation.add_report(_report("r1", ReportReason.OTHER, T0))
    assert (await moderation.get_report("r1")) == _report("r1", ReportReason.OTHER, T0)
