"""Numbered schema migrations, applied at start-up, each once, in order.

`schema_migrations` records the numbers applied. Every step is idempotent
(`checkfirst`, `IF NOT EXISTS`), which is what lets a data dir from the first
release, whose tables exist but which has no migration table, start at step 1
like a new one. The run is one transaction that first takes a lock (see
`_take_migration_lock`), so nodes starting together migrate once and a failed step
leaves nothing half done.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import insert, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn, CreateIndex

from townhall.store import moderation, schema
from townhall.store.clips import add_clip_node_column, clips
from townhall.store.follows import create_follow_tables

MIGRATION_LOCK_KEY = 0x70776E68
"""pg_advisory_xact_lock key held while migrating ("twnh")."""


def _create_version_1_tables(connection: Connection) -> None:
    """The first release's tables (a no-op where they already exist)."""
    schema.metadata.create_all(connection, tables=list(schema.VERSION_1_TABLES), checkfirst=True)


def _add_lookup_indexes(connection: Connection) -> None:
    """Case-insensitive usernames on PostgreSQL, and spaces by host. A new database
    already has them from step 1 (they are part of the tables' metadata)."""
    for index in (schema.username_lower_index, schema.spaces_by_host_index):
        connection.execute(CreateIndex(index, if_not_exists=True))


def _create_clips_table(connection: Connection) -> None:
    """Clips of live spaces and recordings (store/clips.py)."""
    clips.create(connection, checkfirst=True)


def _add_space_details(connection: Connection) -> None:
    """Description, pinned link and topics of a space (a new database has them from
    step 1, whose table definition carries them)."""
    present = {column["name"] for column in inspect(connection).get_columns("spaces")}
    for name in schema.SPACE_DETAIL_COLUMNS:
        if name not in present:
            column = schema.spaces.c[name]
            kind = column.type.compile(dialect=connection.dialect)
            default = " NOT NULL DEFAULT ''" if not column.nullable else ""
            connection.execute(text(f"ALTER TABLE spaces ADD COLUMN {name} {kind}{default}"))


def _add_moderation_tables(connection: Connection) -> None:
    """Reports, decisions, moderators, suspensions, blocks and the audit chain."""
    schema.metadata.create_all(connection, tables=list(moderation.TABLES), checkfirst=True)


def _add_space_captions(connection: Connection) -> None:
    """The per-space captions choice and why a space went live without them (a new
    database already has both from step 1)."""
    present = {column["name"] for column in inspect(connection).get_columns("spaces")}
    for name in schema.SPACE_CAPTIONS_COLUMNS:
        if name not in present:
            column = CreateColumn(schema.spaces.c[name]).compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE spaces ADD COLUMN {column}"))


MIGRATIONS: tuple[Callable[[Connection], None], ...] = (
    _create_version_1_tables,
    _add_lookup_indexes,
    _create_clips_table,
    _add_space_details,
    _add_moderation_tables,
    create_follow_tables,  # follows, reminders, notifications (issue 10)
    _add_space_captions,
    moderation.widen_audit_seq,  # audit_log.seq BIGINT on PostgreSQL
    add_clip_node_column,  # clips.node_id: the node that holds the audio
)
"""Step N is MIGRATIONS[N - 1]. Append only; never edit a released step."""

LATEST_VERSION = len(MIGRATIONS)


def _take_migration_lock(connection: Connection) -> None:
    """Held until the migration commits, so concurrent starts migrate one at a time.

    SQLite: BEGIN IMMEDIATE takes the write lock now, and puts the DDL inside the
    transaction (the sqlite3 module alone begins only before INSERT/UPDATE/DELETE).
    PostgreSQL: a transaction-scoped advisory lock."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def migrate(connection: Connection) -> list[int]:
    """Brings the database to LATEST_VERSION; returns the step numbers it applied."""
    # The store's connections autocommit single statements; a migration is one transaction
    # at the database's own default level (READ COMMITTED on PostgreSQL, so a node that
    # waited for the lock sees the tables the first one committed).
    connection.execution_options(isolation_level=connection.dialect.default_isolation_level)
    with connection.begin():
        _take_migration_lock(connection)
        schema.schema_migrations.create(connection, checkfirst=True)
        done = set(connection.scalars(select(schema.schema_migrations.c.version)))
        applied = []
        for version, step in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            step(connection)
            connection.execute(
                insert(schema.schema_migrations).values(
                    version=version, applied_at=datetime.now(UTC)
                )
            )
            applied.append(version)
        return applied


def applied_versions(connection: Connection) -> list[int]:
    column = schema.schema_migrations.c.version
    return list(connection.scalars(select(column).order_by(column)))
