"""A data dir written by the first release opens with the new store, rows intact.

The schema below is the first release's, frozen here byte for byte (it was created
with CREATE TABLE IF NOT EXISTS and had no migration table); rows are written the
way that release wrote them: ISO-8601 UTC text moments, `record` as 0/1.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from townhall.domain.spaces import Space, SpaceState, SpeakPolicy, User
from townhall.store import SqlStore
from townhall.store.migrations import LATEST_VERSION

RELEASE_0_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS removals (
    space_id TEXT NOT NULL REFERENCES spaces(id),
    user_id TEXT NOT NULL,
    PRIMARY KEY (space_id, user_id)
);
"""

CREATED = datetime(2026, 5, 1, 9, 0, 0, 250000, tzinfo=UTC)
STARTED = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
ENDED = datetime(2026, 5, 1, 11, 30, 0, 5, tzinfo=UTC)
SCHEDULED = datetime(2026, 6, 1, 18, 0, 0, tzinfo=UTC)
TOKEN_EXPIRES = datetime(2099, 1, 1, tzinfo=UTC)


def _release_0_data_dir(path: Path) -> None:
    """What `townhall serve` of the first release left on disk after some use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(RELEASE_0_SCHEMA)
    iso = datetime.isoformat
    db.executemany(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES (?,?,?,?)",
        [
            ("u-host", "HostOne", "$argon2id$old", iso(CREATED)),
            ("u-fan", "fan", "h2", iso(CREATED)),
        ],
    )
    db.execute(
        "INSERT INTO tokens (token_hash, user_id, kind, expires_at) VALUES (?,?,?,?)",
        ("digest", "u-host", "session", iso(TOKEN_EXPIRES)),
    )
    spaces = [
        ("s-ended", "Ended talk", "u-host", "ended", iso(CREATED), None, iso(STARTED), iso(ENDED),
         1, "everyone", 5400.25),
        ("s-soon", "Upcoming", "u-host", "scheduled", iso(CREATED), iso(SCHEDULED), None, None,
         0, "invited", None),
    ]  # fmt: skip
    db.executemany("INSERT INTO spaces VALUES (?,?,?,?,?,?,?,?,?,?,?)", spaces)
    db.execute("INSERT INTO removals (space_id, user_id) VALUES ('s-ended', 'u-fan')")
    db.close()


async def test_a_first_release_data_dir_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "var" / "townhall.sqlite3"
    _release_0_data_dir(path)
    store = await SqlStore(f"sqlite:///{path}").open()
    try:
        host = User("u-host", "HostOne")
        assert await store.schema_versions() == list(range(1, LATEST_VERSION + 1))
        assert await store.credentials("hostone") == (host, "$argon2id$old")
        assert await store.user_for_token("digest", datetime.now(UTC)) == host
        assert await store.get_space("s-ended") == Space(
            id="s-ended",
            title="Ended talk",
            host=host,
            state=SpaceState.ENDED,
            created_at=CREATED,
            started_at=STARTED,
            ended_at=ENDED,
            record=True,
            speak_policy=SpeakPolicy.EVERYONE,
            recording_seconds=5400.25,
            captions=True,  # migration 7: a space from before asks for captions
        )
        upcoming = await store.list_spaces([SpaceState.SCHEDULED], limit=10)
        assert [(s.id, s.scheduled_for, s.record) for s in upcoming] == [
            ("s-soon", SCHEDULED, False)
        ]
        assert await store.removals("s-ended") == {"u-fan"}
        assert await store.count_spaces_by_host("u-host", [SpaceState.ENDED]) == 1

        # and it takes new writes next to the old rows, under the old rules
        await store.create_user("u-new", "newcomer", "h3")
        later = CREATED + timedelta(days=40)
        await store.create_token("digest-2", "u-new", "api", later)
        assert await store.user_for_token("digest-2", later - timedelta(seconds=1)) == User(
            "u-new", "newcomer"
        )
    finally:
        await store.close()

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        names = {row[0] for row in db.execute("SELECT username FROM users")}
        assert names == {"HostOne", "fan", "newcomer"}
    finally:
        db.close()


async def test_a_new_sqlite_store_is_durable_wal(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite3"
    store = await SqlStore(f"sqlite:///{path}").open()
    await store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        db.close()
