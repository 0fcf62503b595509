"""PostgreSQL goes away under a running node: writes answer 503 with a clear error
(never a hang, a 500 or a traceback), the listener path keeps answering from memory
and shared state, and writes work again once PostgreSQL is back.

This module starts its own PostgreSQL, since it stops it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, free_port, start_server, stop_server
from pg_server import PostgresServer, running_postgres
from townhall.domain.spaces import Space, SpaceState, User
from townhall.service.ids import new_id
from townhall.store import SqlStore, StoreUnavailable
from townhall.store.engine import PG_CONNECT_TIMEOUT_S

WRITE_ANSWER_BOUND_S = 2 * PG_CONNECT_TIMEOUT_S + 5
"""A write with PostgreSQL down must be answered well before this (a hang fails)."""
RECOVERY_BOUND_S = 15.0
STREAM_CHUNKS = 5
"""Live chunks a listener who was streaming before the outage must still receive."""


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def database_url(own_postgres: PostgresServer) -> Iterator[str]:
    if not own_postgres.is_running():
        own_postgres.restart()
    name = own_postgres.create_database()
    yield own_postgres.url(name)
    if not own_postgres.is_running():
        own_postgres.restart()
    own_postgres.drop_database(name)


@pytest.fixture
def node(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path / "node", TOWNHALL_STORE=database_url, TOWNHALL_ADMISSION_PER_ADDRESS_RATE="0"
    )
    try:
        yield running
    finally:
        stop_server(running)


def _sign_up(http: httpx.Client, name: str) -> dict[str, str]:
    password = "correct horse"
    created = http.post("/api/users", json={"username": name, "password": password})
    assert created.status_code == 201, created.text
    token = http.post("/api/tokens", json={"username": name, "password": password})
    assert token.status_code == 201, token.text
    return {"Authorization": f"Bearer {token.json()['token']}"}


def _assert_store_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "store_unavailable"
    assert "database" in error["message"]
    assert int(response.headers["retry-after"]) > 0


def test_writes_answer_503_while_postgresql_is_down_and_listeners_carry_on(
    node: RunningServer, own_postgres: PostgresServer
) -> None:
    with (
        httpx.Client(base_url=node.url, timeout=WRITE_ANSWER_BOUND_S) as http,
        httpx.Client(base_url=node.url, timeout=WRITE_ANSWER_BOUND_S) as listener,
    ):
        host = _sign_up(http, "host")
        space = http.post("/api/spaces", json={"title": "Outage"}, headers=host).json()
        started = http.post(f"/api/spaces/{space['id']}/start", headers=host)
        assert started.status_code == 200, started.text
        assert http.get(f"/api/spaces/{space['id']}").status_code == 200
        ticket = http.post(f"/api/spaces/{space['id']}/join", json={}).json()

        with listener.stream("GET", ticket["live_url"]) as stream:
            assert stream.status_code == 200
            audio = stream.iter_bytes()
            next(audio)

            own_postgres.stop()

            began = time.monotonic()
            _assert_store_unavailable(
                http.post("/api/users", json={"username": "late", "password": "correct horse"})
            )
            _assert_store_unavailable(
                http.post("/api/spaces", json={"title": "Another"}, headers=host)
            )
            assert time.monotonic() - began < WRITE_ANSWER_BOUND_S

            snapshot = http.get(f"/api/spaces/{space['id']}")
            assert snapshot.status_code == 200, snapshot.text
            assert snapshot.json()["state"] == "live"
            joined = http.post(f"/api/spaces/{space['id']}/join", json={})
            assert joined.status_code == 200, joined.text
            assert "ticket" in joined.json(), joined.text

            streamed_during_outage = sum(len(next(audio)) for _ in range(STREAM_CHUNKS))
            assert streamed_during_outage > 0

        own_postgres.restart()
        deadline = time.monotonic() + RECOVERY_BOUND_S
        while True:
            again = http.post("/api/users", json={"username": "late", "password": "correct horse"})
            if again.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert again.status_code == 201, again.text

    assert "Traceback" not in node.log()
    assert "store unavailable" in node.log()


async def test_the_store_raises_store_unavailable_not_a_driver_error(
    database_url: str, own_postgres: PostgresServer
) -> None:
    store = await SqlStore(database_url).open()
    try:
        await store.create_user("u1", "alice", "h")
        own_postgres.stop()
        began = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get_user("u1")
        with pytest.raises(StoreUnavailable):
            await store.create_user("u2", "bob", "h")
        assert time.monotonic() - began < WRITE_ANSWER_BOUND_S
    finally:
        await store.close()


async def test_opening_an_unreachable_store_says_where_without_the_password() -> None:
    url = f"postgresql://townhall:s3cret@127.0.0.1:{free_port()}/townhall"
    with pytest.raises(StoreUnavailable) as refused:
        await SqlStore(url).open()
    assert "cannot reach the store at postgresql://townhall:***@127.0.0.1" in refused.value.message
    assert "s3cret" not in refused.value.message


async def test_a_restart_while_idle_costs_no_call(
    database_url: str, own_postgres: PostgresServer
) -> None:
    """Pooled connections die with the server; the first calls after it is back still
    succeed (the dead pool is dropped and the call retried once on a fresh connection)."""
    store = await SqlStore(database_url).open()
    try:
        user = await store.create_user("u1", "alice", "h")
        assert await store.get_user("u1") == user
        own_postgres.stop()
        own_postgres.restart()
        assert await store.get_user("u1") == user
        await store.create_token("digest", "u1", "session", datetime.now(UTC) + timedelta(days=1))
        assert await store.user_for_token("digest", datetime.now(UTC)) == user
    finally:
        await store.close()


async def test_a_write_that_cannot_be_retried_is_store_unavailable_on_a_dead_connection(
    database_url: str, own_postgres: PostgresServer
) -> None:
    store = await SqlStore(database_url).open()
    try:
        await store.create_user("u1", "alice", "h")
        own_postgres.stop()
        own_postgres.restart()
        with pytest.raises(StoreUnavailable):
            await store.create_user("u2", "bob", "h")
        assert await store.create_user("u2", "bob", "h") == User("u2", "bob")
    finally:
        await store.close()


async def test_a_space_this_node_never_loaded_is_503_not_500_during_the_outage(
    node: RunningServer, database_url: str, own_postgres: PostgresServer
) -> None:
    """Another node created it; this one must ask the store, which is down."""
    other_node = await SqlStore(database_url).open()
    try:
        host = await other_node.create_user(new_id(), "elsewhere", "h")
        space = Space(new_id(), "Made elsewhere", host, SpaceState.LIVE, datetime.now(UTC))
        await other_node.save_space(space)
    finally:
        await other_node.close()
    own_postgres.stop()
    async with httpx.AsyncClient(base_url=node.url, timeout=WRITE_ANSWER_BOUND_S) as http:
        _assert_store_unavailable(await http.get(f"/api/spaces/{space.id}"))
        _assert_store_unavailable(await http.post(f"/api/spaces/{space.id}/join", json={}))
    assert "Traceback" not in node.log()
