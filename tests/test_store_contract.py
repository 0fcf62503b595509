"""The Store contract, run against every backend: SQLite and a real PostgreSQL.

Each test gets an empty database (a new SQLite file, or a new PostgreSQL database),
so no test sees another's rows.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Connection

from townhall.domain.captions import CaptionsWithheld
from townhall.domain.errors import Conflict
from townhall.domain.spaces import Space, SpaceState, SpeakPolicy, User
from townhall.store import SqlStore, StoreUrlError, backend_name, migrations, open_store
from townhall.store.migrations import LATEST_VERSION

T0 = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


async def _host(store: SqlStore, name: str = "host") -> User:
    return await store.create_user(f"id-{name}", name, "hash")


def _space(space_id: str, host: User, state: SpaceState, **moments: datetime | None) -> Space:
    return Space(
        id=space_id, title=f"Space {space_id}", host=host, state=state, created_at=T0, **moments
    )


class TestAccounts:
    async def test_a_user_is_found_by_id_and_by_name_in_any_case(self, store: SqlStore) -> None:
        created = await store.create_user("u1", "Alice_1", "argon2-hash")
        assert created == User("u1", "Alice_1")
        assert await store.get_user("u1") == created
        assert await store.credentials("alice_1") == (created, "argon2-hash")
        assert await store.credentials("ALICE_1") == (created, "argon2-hash")
        assert await store.get_user("nobody") is None
        assert await store.credentials("nobody") is None

    async def test_a_name_taken_in_another_case_is_a_conflict(self, store: SqlStore) -> None:
        await store.create_user("u1", "alice", "h")
        with pytest.raises(Conflict) as refused:
            await store.create_user("u2", "ALICE", "h")
        assert refused.value.code == "username_taken"
        assert await store.get_user("u2") is None

    async def test_a_new_password_hash_replaces_the_old(self, store: SqlStore) -> None:
        user = await store.create_user("u1", "alice", "old")
        await store.set_password_hash("u1", "new")
        assert await store.credentials("alice") == (user, "new")

    async def test_a_token_names_its_user_until_it_expires_or_is_deleted(
        self, store: SqlStore
    ) -> None:
        user = await store.create_user("u1", "alice", "h")
        expires = T0 + timedelta(days=1)
        await store.create_token("digest", "u1", "session", expires)
        assert await store.user_for_token("digest", T0) == user
        assert await store.user_for_token("digest", expires - timedelta(microseconds=1)) == user
        assert await store.user_for_token("digest", expires) is None
        assert await store.user_for_token("other", T0) is None
        await store.delete_token("digest")
        assert await store.user_for_token("digest", T0) is None


class TestSpaces:
    async def test_a_space_round_trips_with_aware_utc_moments(self, store: SqlStore) -> None:
        host = await _host(store)
        paris = timezone(timedelta(hours=2))
        scheduled = datetime(2026, 3, 2, 20, 0, 0, 654321, tzinfo=paris)
        space = Space(
            id="s1",
            title="Town hall",
            host=host,
            state=SpaceState.SCHEDULED,
            created_at=T0,
            scheduled_for=scheduled,
            record=True,
            speak_policy=SpeakPolicy.INVITED,
        )
        await store.save_space(space)
        found = await store.get_space("s1")
        assert found == space
        assert found is not None and found.scheduled_for is not None
        assert found.scheduled_for.utcoffset() == timedelta(0)
        assert found.scheduled_for.microsecond == 654321
        assert found.created_at.tzinfo is not None and found.created_at.utcoffset() == timedelta(0)
        assert await store.get_space("missing") is None

    async def test_saving_again_updates_the_record(self, store: SqlStore) -> None:
        host = await _host(store)
        space = replace(_space("s1", host, SpaceState.SCHEDULED), captions=True)
        await store.save_space(space)
        assert await store.get_space("s1") == space
        live = replace(
            space.start(T0 + timedelta(minutes=1)), captions_withheld=CaptionsWithheld.NODE_LIMIT
        )
        await store.save_space(live)
        assert await store.get_space("s1") == live
        ended = live.end(T0 + timedelta(minutes=9))
        await store.save_space(ended)
        finished = replace(ended, recording_seconds=480.5, title="Renamed")
        await store.save_space(finished)
        assert await store.get_space("s1") == finished

    async def test_listing_orders_live_then_scheduled_then_ended(self, store: SqlStore) -> None:
        host = await _host(store)
        minute = timedelta(minutes=1)
        spaces = [
            _space("live-old", host, SpaceState.LIVE, started_at=T0),
            _space("live-new", host, SpaceState.LIVE, started_at=T0 + 5 * minute),
            _space("soon", host, SpaceState.SCHEDULED, scheduled_for=T0 + 60 * minute),
            _space("later", host, SpaceState.SCHEDULED, scheduled_for=T0 + 600 * minute),
            _space("ended-old", host, SpaceState.ENDED, started_at=T0, ended_at=T0 + minute),
            _space("ended-new", host, SpaceState.ENDED, started_at=T0, ended_at=T0 + 9 * minute),
        ]
        for space in reversed(spaces):
            await store.save_space(space)
        every = [SpaceState.LIVE, SpaceState.SCHEDULED, SpaceState.ENDED]
        listed = [s.id for s in await store.list_spaces(every, limit=100)]
        assert listed == ["live-new", "live-old", "soon", "later", "ended-new", "ended-old"]
        page = await store.list_spaces(every, limit=2, offset=2)
        assert [s.id for s in page] == ["soon", "later"]
        only_ended = await store.list_spaces([SpaceState.ENDED], limit=1)
        assert [s.id for s in only_ended] == ["ended-new"]
        assert await store.list_spaces([SpaceState.LIVE], limit=0) == []

    async def test_spaces_are_counted_per_host_and_state(self, store: SqlStore) -> None:
        alice, bob = await _host(store, "alice"), await _host(store, "bob")
        await store.save_space(_space("a1", alice, SpaceState.LIVE, started_at=T0))
        await store.save_space(_space("a2", alice, SpaceState.SCHEDULED))
        await store.save_space(_space("a3", alice, SpaceState.ENDED, ended_at=T0))
        await store.save_space(_space("b1", bob, SpaceState.SCHEDULED))
        live_or_soon = [SpaceState.LIVE, SpaceState.SCHEDULED]
        assert await store.count_spaces_by_host(alice.id, live_or_soon) == 2
        assert await store.count_spaces_by_host(alice.id, [SpaceState.ENDED]) == 1
        assert await store.count_spaces_by_host(bob.id, live_or_soon) == 1
        assert await store.count_spaces_by_host("nobody", live_or_soon) == 0

    async def test_removals_are_kept_per_space_and_idempotent(self, store: SqlStore) -> None:
        host = await _host(store)
        await store.save_space(_space("s1", host, SpaceState.LIVE, started_at=T0))
        await store.save_space(_space("s2", host, SpaceState.LIVE, started_at=T0))
        await store.add_removal("s1", "troll")
        await store.add_removal("s1", "troll")
        await store.add_removal("s1", "spammer")
        assert await store.removals("s1") == {"troll", "spammer"}
        assert await store.removals("s2") == set()


class TestSchema:
    async def test_opening_applies_every_migration_once(self, store_url: str) -> None:
        every_step = list(range(1, LATEST_VERSION + 1))
        for _ in range(2):
            opened = await SqlStore(store_url).open()
            try:
                assert await opened.schema_versions() == every_step
            finally:
                await opened.close()

    async def test_spaces_from_before_the_captions_step_ask_for_captions(
        self, store_url: str
    ) -> None:
        """The captions step on a database without its columns (dropped from a new one: step 1
        would create them) keeps the rows and gives them the choice they had."""
        opened = await SqlStore(store_url).open()
        try:
            await opened.save_space(_space("old", await _host(opened), SpaceState.SCHEDULED))

            def back_to_step_6(connection: Connection) -> None:
                for column in ("captions", "captions_withheld"):
                    connection.execute(text(f"ALTER TABLE spaces DROP COLUMN {column}"))
                step = migrations.MIGRATIONS.index(migrations._add_space_captions) + 1
                forget = text("DELETE FROM schema_migrations WHERE version = :step")
                connection.execute(forget, {"step": step})
                connection.commit()

            await opened.run(back_to_step_6)
        finally:
            await opened.close()
        reopened = await SqlStore(store_url).open()
        try:
            assert await reopened.schema_versions() == list(range(1, LATEST_VERSION + 1))
            old = await reopened.get_space("old")
            assert old is not None and old.captions is True and old.captions_withheld is None
        finally:
            await reopened.close()

    async def test_data_outlives_the_process_that_wrote_it(self, store_url: str) -> None:
        writer = await open_store(store_url)
        await writer.create_user("u1", "alice", "h")
        await writer.close()
        reader = await open_store(store_url)
        try:
            assert await reader.get_user("u1") == User("u1", "alice")
        finally:
            await reader.close()


def test_a_store_url_names_its_backend() -> None:
    assert backend_name("sqlite:///var/townhall.sqlite3") == "sqlite"
    assert backend_name("postgresql://townhall@db:5432/townhall") == "postgresql"
    assert backend_name("postgresql+asyncpg://db/townhall") == "postgresql"
    with pytest.raises(StoreUrlError, match="sqlite:///PATH or postgresql://"):
        backend_name("mysql://db/townhall")


async def test_nodes_starting_together_migrate_once(store_url: str) -> None:
    """Stores open one empty database at the same moment (nodes starting together)."""
    opened = await asyncio.gather(*(SqlStore(store_url).open() for _ in range(3)))
    try:
        for store in opened:
            assert await store.schema_versions() == list(range(1, LATEST_VERSION + 1))
        await opened[0].create_user("u1", "alice", "h")
        assert await opened[1].get_user("u1") == User("u1", "alice")
    finally:
        for store in opened:
            await store.close()


async def test_both_backends_give_back_identical_records(tmp_path: Path, postgres_url: str) -> None:
    """The same space read from SQLite and from PostgreSQL: equal, same tzinfo, same repr."""
    local = timezone(timedelta(hours=-5, minutes=-30))
    space = Space(
        id="s1",
        title="Both",
        host=User("id-host", "host"),
        state=SpaceState.ENDED,
        created_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=local),
        started_at=datetime(2026, 1, 2, 4, 0, tzinfo=UTC),
        ended_at=datetime(2026, 1, 2, 5, 0, 0, 999999, tzinfo=UTC),
        record=True,
        recording_seconds=3600.125,
    )
    found = []
    for url in (f"sqlite:///{tmp_path / 'both.sqlite3'}", postgres_url):
        store = await open_store(url)
        try:
            await store.create_user("id-host", "host", "h")
            await store.save_space(space)
            found.append(await store.get_space("s1"))
        finally:
            await store.close()
    on_sqlite, on_postgresql = found
    assert on_sqlite == on_postgresql == space
    assert repr(on_sqlite) == repr(on_postgresql)


AWARE_MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.timezones(),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(moment=AWARE_MOMENTS)
async def test_any_aware_moment_comes_back_equal_in_utc(store: SqlStore, moment: datetime) -> None:
    host = User("id-host", "host")
    if await store.get_user(host.id) is None:
        await store.create_user(host.id, host.username, "h")
    space_id = secrets.token_hex(8)  # one database serves every example
    space = Space(
        space_id, "t", host, SpaceState.SCHEDULED, created_at=moment, scheduled_for=moment
    )
    await store.save_space(space)
    found = await store.get_space(space_id)
    assert found is not None
    # The same instant in UTC. (Compared in UTC: Python never finds a moment inside a
    # repeated hour, fold=1, equal to one in another zone; hypothesis finds such moments.)
    instant = moment.astimezone(UTC)
    assert found.created_at == found.scheduled_for == instant
    assert found.created_at.tzinfo is UTC
