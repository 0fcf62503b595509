"""From a store URL to a SQLAlchemy async engine: the only dialect-aware code.

`sqlite:///PATH` runs on aiosqlite with the first release's durability (WAL,
synchronous=NORMAL, foreign keys on); `postgresql://USER@HOST:PORT/DB` runs on
asyncpg with short connect and command timeouts, so an unreachable server turns
into `StoreUnavailable` within seconds instead of a hung request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

SQLITE_SCHEMES = ("sqlite",)
POSTGRESQL_SCHEMES = ("postgresql", "postgres")

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's lock before failing (sqlite3's timeout)."""
SQLITE_POOL_SIZE = 1
"""One connection, as the first release had: SQLite serializes writers anyway, and one
connection never meets "database is locked" from itself."""

PG_CONNECT_TIMEOUT_S = 3.0
"""A connection attempt to PostgreSQL gives up after this (then 503, not a hang)."""
PG_COMMAND_TIMEOUT_S = 10.0
"""One statement gives up after this; every statement here is a key lookup or a short list."""
PG_POOL_SIZE = 5
PG_POOL_OVERFLOW = 5
POOL_TIMEOUT_S = 5.0
"""A request waits this long for a free connection before it is answered 503."""


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


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_engine(url: URL) -> AsyncEngine:
    url = url.set(drivername="sqlite+aiosqlite")
    database = url.database or ":memory:"
    if database == ":memory:":
        engine = create_async_engine(url, poolclass=StaticPool)
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=0,
            pool_timeout=POOL_TIMEOUT_S,
        )
    event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    return engine


def _postgresql_engine(url: URL) -> AsyncEngine:
    return create_async_engine(
        url.set(drivername="postgresql+asyncpg"),
        connect_args={"timeout": PG_CONNECT_TIMEOUT_S, "command_timeout": PG_COMMAND_TIMEOUT_S},
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_POOL_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_S,
        pool_pre_ping=True,
    )


def create_engine_for(url: str) -> AsyncEngine:
    if backend_name(url) == "sqlite":
        return _sqlite_engine(make_url(url))
    return _postgresql_engine(make_url(url))
