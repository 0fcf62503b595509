"""The tables, written once for every dialect (SQLAlchemy Core).

Version 1 is exactly the schema the first release created in SQLite with
`CREATE TABLE IF NOT EXISTS` (text timestamps, a NOCASE username), so an existing
data dir opens unchanged; PostgreSQL gets native types for the same columns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.types import TEXT, TypeDecorator, TypeEngine


class UtcTimestamp(TypeDecorator[datetime]):
    """A timezone-aware moment that comes back equal, in UTC, on every backend.

    SQLite keeps the first release's ISO-8601 text (UTC, so text order is time
    order); PostgreSQL keeps `timestamptz`. Both return aware UTC datetimes.
    """

    impl = TEXT
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(TEXT())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store keeps timezone-aware datetimes only")
        moment = value.astimezone(UTC)
        return moment if dialect.name == "postgresql" else moment.isoformat()

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return moment.astimezone(UTC)


def _text() -> TypeEngine[str]:
    return TEXT()


def _username() -> TypeEngine[str]:
    """Case-insensitive in SQLite as the first release made it; PostgreSQL's
    case-insensitivity is the unique index on lower(username) (migration 2)."""
    return TEXT().with_variant(String(collation="NOCASE"), "sqlite")


def big_integer() -> TypeEngine[int]:
    """A 64-bit integer on every backend: BIGINT on PostgreSQL (whose INTEGER stops at
    2**31 - 1), INTEGER on SQLite (already 64-bit, and the only type that makes a
    primary key the rowid, so AUTOINCREMENT keeps working)."""
    return BigInteger().with_variant(Integer(), "sqlite")


metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", _text(), primary_key=True),
    Column("username", _username(), nullable=False, unique=True),
    Column("password_hash", _text(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", _text(), primary_key=True),
    Column("user_id", _text(), ForeignKey("users.id"), nullable=False),
    Column("kind", _text(), nullable=False),
    Column("expires_at", UtcTimestamp(), nullable=False),
)

spaces = Table(
    "spaces",
    metadata,
    Column("id", _text(), primary_key=True),
    Column("title", _text(), nullable=False),
    Column("host_id", _text(), ForeignKey("users.id"), nullable=False),
    Column("state", _text(), nullable=False),
    Column("created_at", UtcTimestamp(), nullable=False),
    Column("scheduled_for", UtcTimestamp()),
    Column("started_at", UtcTimestamp()),
    Column("ended_at", UtcTimestamp()),
    Column("record", Boolean(create_constraint=False), nullable=False),
    Column("speak_policy", _text(), nullable=False),
    Column("recording_seconds", Float()),
    Column("description", _text(), nullable=False, server_default=""),
    Column("pinned_url", _text()),
    Column("topics", _text(), nullable=False, server_default=""),
    Column("captions", Boolean(create_constraint=False), nullable=False, server_default=true()),
    Column("captions_withheld", _text()),
    Index("spaces_by_state", "state", "scheduled_for"),
)
SPACE_DETAIL_COLUMNS = ("description", "pinned_url", "topics")
"""Added by migration 4 (issue 10: what the host tells listeners)."""
SPACE_CAPTIONS_COLUMNS = ("captions", "captions_withheld")
"""Added by migration 7 (issue 10: the per-space captions choice and the node's answer).
A space from before asks for captions, as it did when the choice was not kept."""

removals = Table(
    "removals",
    metadata,
    Column("space_id", _text(), ForeignKey("spaces.id"), primary_key=True),
    Column("user_id", _text(), primary_key=True),
)

VERSION_1_TABLES = (users, tokens, spaces, removals)

username_lower_index = Index("users_by_lower_username", func.lower(users.c.username), unique=True)
"""Case-insensitive uniqueness and sign-in lookup on every backend (migration 2)."""

spaces_by_host_index = Index("spaces_by_host", spaces.c.host_id, spaces.c.state)
"""count_spaces_by_host without a scan (migration 2)."""

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer(), primary_key=True, autoincrement=False),
    Column("applied_at", UtcTimestamp(), nullable=False),
)
"""One row per applied migration, keyed by its number."""
