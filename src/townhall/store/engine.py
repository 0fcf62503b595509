"""From a store URL to a runner of Core statements: the only dialect-aware code.

The store's operations are plain synchronous functions over a SQLAlchemy
`Connection`, written once. A runner executes one of them per call:

- SQLite (`sqlite:///PATH`): a sync engine on one dedicated thread. sqlite3 blocks,
  so the whole operation runs there in a single hop from the event loop (aiosqlite
  hops once per DBAPI call, five per query, which measured 5x slower: see
  bench/store_ops.py); one thread also serializes writers, as SQLite wants. Durability
  as in the first release: WAL, synchronous=NORMAL, foreign keys on.
- PostgreSQL (`postgresql://USER@HOST:PORT/DB`): asyncpg through SQLAlchemy's async
  engine, which drives the same sync function on the event loop (`run_sync`), with
  short connect and command timeouts so an unreachable server becomes
  `StoreUnavailable` within seconds instead of a hung request.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from townhall.private_files import ensure_private_file, make_private_dir

T = TypeVar("T")

SQLITE_SCHEMES = ("sqlite",)
POSTGRESQL_SCHEMES = ("postgresql", "postgres")

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's lock before failing (sqlite3's timeout)."""
WAL_SWITCH_RETRY_S = 0.02
"""Pause between attempts to switch a new database to WAL while another writes."""

PG_CONNECT_TIMEOUT_S = 3.0
"""A connection attempt to PostgreSQL gives up after this (then 503, not a hang)."""
PG_COMMAND_TIMEOUT_S = 10.0
"""One statement gives up after this; every statement here is a key lookup or a short list."""
PG_POOL_SIZE = 5
PG_POOL_OVERFLOW = 5
POOL_TIMEOUT_S = 5.0
"""A request waits this long for a free connection before it is answered 503."""
PG_PRE_PING = False
"""No check of a pooled connection before each use: it costs a round trip per call
(measured: half the calls per second). A connection found dead instead invalidates the
pool and the call is retried once on a fresh one (SqlStore._run)."""

SINGLE_STATEMENT_CALLS: dict[str, Any] = {
    "isolation_level": "AUTOCOMMIT",
    "pool_reset_on_return": None,
}
"""Every store call is one statement (upserts included), so it commits by itself: no
BEGIN, COMMIT or reset ROLLBACK round trips. Migrations open their own transaction."""


class StoreUrlError(ValueError):
    """The store URL names no backend we have; said at start-up, not at the first write."""


def backend_name(url: str) -> str:
    """'sqlite' or 'postgresql' for a store URL, whatever driver it names."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in SQLITE_SCHEMES:
        return "sqlite"
    if scheme in POSTGRESQL_SCHEMES:
        return "postgresql"
    raise StoreUrlError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")


class Runner(Protocol):
    """Runs one synchronous Core operation on a connection of its database."""

    dialect: str

    async def run(self, operation: Callable[[Connection], T]) -> T: ...

    async def close(self) -> None: ...


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        _switch_to_wal(cursor)
        for pragma in ("synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """WAL once per database file (it persists), waiting for other writers meanwhile.

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once,
    without its busy handler, while another connection holds a write lock: nodes that
    start together on a new database (one migrating while another connects) failed so.
    So the switch is retried until the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(WAL_SWITCH_RETRY_S)


class SqliteRunner:
    dialect = "sqlite"

    def __init__(self, url: URL) -> None:
        url = url.set(drivername="sqlite+pysqlite")
        database = url.database or ":memory:"
        options: dict[str, Any] = {**SINGLE_STATEMENT_CALLS}
        if database == ":memory:":
            options["poolclass"] = StaticPool
        else:
            make_private_dir(Path(database).parent)
            ensure_private_file(Path(database))
            options.update(pool_size=1, max_overflow=0)
        self._engine: Engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            **options,
        )
        event.listen(self._engine, "connect", _set_sqlite_pragmas)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    def _call(self, operation: Callable[[Connection], T]) -> T:
        with self._engine.connect() as connection:
            return operation(connection)

    async def run(self, operation: Callable[[Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._call, operation)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown(wait=True)


class PostgresRunner:
    dialect = "postgresql"

    def __init__(self, url: URL) -> None:
        self._engine: AsyncEngine = create_async_engine(
            url.set(drivername="postgresql+asyncpg"),
            connect_args={"timeout": PG_CONNECT_TIMEOUT_S, "command_timeout": PG_COMMAND_TIMEOUT_S},
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_POOL_OVERFLOW,
            pool_timeout=POOL_TIMEOUT_S,
            pool_pre_ping=PG_PRE_PING,
            **SINGLE_STATEMENT_CALLS,
        )

    async def run(self, operation: Callable[[Connection], T]) -> T:
        async with self._engine.connect() as connection:
            return await connection.run_sync(operation)

    async def close(self) -> None:
        await self._engine.dispose()


def runner_for(url: str) -> Runner:
    if backend_name(url) == "sqlite":
        return SqliteRunner(make_url(url))
    return PostgresRunner(make_url(url))

