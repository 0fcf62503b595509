"""The first release's hand-written SQLite store, kept only as bench.store_ops' baseline
("sqlite-before"): the server uses the SQLAlchemy Core store (townhall.store.sql).

One connection on one worker thread.

sqlite3 blocks, so every call runs on a single dedicated thread; one thread
also serializes writers, which is what SQLite wants anyway. WAL keeps reads
cheap and a crash never loses a committed row.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from townhall.domain.errors import Conflict
from townhall.domain.spaces import Space, SpaceState, SpeakPolicy, User
from townhall.private_files import ensure_private_file, make_private_dir

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spaces (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    host_id TEXT NOT NULL REFERENCES users(id),
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    scheduled_for TEXT,
    started_at TEXT,
    ended_at TEXT,
    record INTEGER NOT NULL,
    speak_policy TEXT NOT NULL,
    recording_seconds REAL
);
CREATE INDEX IF NOT EXISTS spaces_by_state ON spaces(state, scheduled_for);
CREATE INDEX IF NOT EXISTS spaces_by_host ON spaces(host_id, state);
CREATE TABLE IF NOT EXISTS removals (
    space_id TEXT NOT NULL REFERENCES spaces(id),
    user_id TEXT NOT NULL,
    PRIMARY KEY (space_id, user_id)
);
"""

SPACE_COLUMNS = (
    "s.id, s.title, s.state, s.created_at, s.scheduled_for, s.started_at, s.ended_at, "
    "s.record, s.speak_policy, s.recording_seconds, u.id, u.username"
)

LISTING_ORDER = (
    "CASE s.state WHEN 'live' THEN 0 WHEN 'scheduled' THEN 1 ELSE 2 END, "
    "CASE WHEN s.state = 'live' THEN s.started_at END DESC, "
    "CASE WHEN s.state = 'scheduled' THEN COALESCE(s.scheduled_for, s.created_at) END ASC, "
    "CASE WHEN s.state = 'ended' THEN s.ended_at END DESC, s.id"
)
"""Live first, newest start first; then upcoming, soonest first (a space ready to start
without a date by when it was made); then ended, most recent first (Store.list_spaces)."""


def _text(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _space(row: tuple[Any, ...]) -> Space:
    (sid, title, state, created, scheduled, started, ended, record, policy, seconds, uid, uname) = (
        row
    )
    return Space(
        id=sid,
        title=title,
        host=User(uid, uname),
        state=SpaceState(state),
        created_at=_moment(created) or datetime.now(UTC),
        scheduled_for=_moment(scheduled),
        started_at=_moment(started),
        ended_at=_moment(ended),
        record=bool(record),
        speak_policy=SpeakPolicy(policy),
        recording_seconds=seconds,
    )


class SqliteStore:
    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> SqliteStore:
        await self._run(self._connect)
        return self

    def _connect(self) -> None:
        if self._path != ":memory:":
            make_private_dir(Path(self._path).parent)
            ensure_private_file(Path(self._path))
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        self._db = db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert self._db is not None, "store not opened"
        return self._db.execute(sql, params).fetchall()

    async def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await self._run(self._execute, sql, params)

    # -- accounts --------------------------------------------------------------

    async def create_user(self, user_id: str, username: str, password_hash: str) -> User:
        try:
            await self._query(
                "INSERT INTO users (id, username, password_hash, created_at) VALUES (?,?,?,?)",
                user_id,
                username,
                password_hash,
                _text(datetime.now(UTC)),
            )
        except sqlite3.IntegrityError:
            raise Conflict("that username is taken", code="username_taken") from None
        return User(user_id, username)

    async def credentials(self, username: str) -> tuple[User, str] | None:
        rows = await self._query(
            "SELECT id, username, password_hash FROM users WHERE username = ?", username
        )
        return (User(rows[0][0], rows[0][1]), rows[0][2]) if rows else None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self._query("UPDATE users SET password_hash = ? WHERE id = ?", password_hash, user_id)

    async def get_user(self, user_id: str) -> User | None:
        rows = await self._query("SELECT id, username FROM users WHERE id = ?", user_id)
        return User(*rows[0]) if rows else None

    async def create_token(
        self, token_hash: str, user_id: str, kind: str, expires_at: datetime
    ) -> None:
        await self._query(
            "INSERT INTO tokens (token_hash, user_id, kind, expires_at) VALUES (?,?,?,?)",
            token_hash,
            user_id,
            kind,
            _text(expires_at),
        )

    async def user_for_token(self, token_hash: str, now: datetime) -> User | None:
        rows = await self._query(
            "SELECT u.id, u.username FROM tokens t JOIN users u ON u.id = t.user_id "
            "WHERE t.token_hash = ? AND t.expires_at > ?",
            token_hash,
            _text(now),
        )
        return User(*rows[0]) if rows else None

    async def delete_token(self, token_hash: str) -> None:
        await self._query("DELETE FROM tokens WHERE token_hash = ?", token_hash)

    # -- spaces ------------------------------------------------------------------

    async def save_space(self, space: Space) -> None:
        await self._query(
            "INSERT INTO spaces (id, title, host_id, state, created_at, scheduled_for, "
            "started_at, ended_at, record, speak_policy, recording_seconds) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "title=excluded.title, state=excluded.state, scheduled_for=excluded.scheduled_for, "
            "started_at=excluded.started_at, ended_at=excluded.ended_at, "
            "record=excluded.record, speak_policy=excluded.speak_policy, "
            "recording_seconds=excluded.recording_seconds",
            space.id,
            space.title,
            space.host.id,
            space.state.value,
            _text(space.created_at),
            _text(space.scheduled_for),
            _text(space.started_at),
            _text(space.ended_at),
            int(space.record),
            space.speak_policy.value,
            space.recording_seconds,
        )

    async def get_space(self, space_id: str) -> Space | None:
        rows = await self._query(
            f"SELECT {SPACE_COLUMNS} FROM spaces s JOIN users u ON u.id = s.host_id "
            "WHERE s.id = ?",
            space_id,
        )
        return _space(rows[0]) if rows else None

    async def list_spaces(
        self, states: Iterable[SpaceState], limit: int, offset: int = 0
    ) -> list[Space]:
        wanted = [state.value for state in states]
        marks = ",".join("?" * len(wanted))
        rows = await self._query(
            f"SELECT {SPACE_COLUMNS} FROM spaces s JOIN users u ON u.id = s.host_id "
            f"WHERE s.state IN ({marks}) ORDER BY {LISTING_ORDER} LIMIT ? OFFSET ?",
            *wanted,
            limit,
            offset,
        )
        return [_space(row) for row in rows]

    async def count_spaces_by_host(self, host_id: str, states: Iterable[SpaceState]) -> int:
        wanted = [state.value for state in states]
        marks = ",".join("?" * len(wanted))
        rows = await self._query(
            f"SELECT COUNT(*) FROM spaces WHERE host_id = ? AND state IN ({marks})",
            host_id,
            *wanted,
        )
        return int(rows[0][0])

    async def add_removal(self, space_id: str, user_id: str) -> None:
        await self._query(
            "INSERT OR IGNORE INTO removals (space_id, user_id) VALUES (?, ?)", space_id, user_id
        )

    async def removals(self, space_id: str) -> set[str]:
        rows = await self._query("SELECT user_id FROM removals WHERE space_id = ?", space_id)
        return {row[0] for row in rows}

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
