"""A node that opens a new SQLite database while another process holds its write lock
waits for it. SQLite refuses the switch to WAL at once ("database is locked", no busy
wait) while another connection writes: nodes starting together on a new database
failed so in CI (test_nodes_starting_together_migrate_once[sqlite], now and then)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from townhall.store.sql import SqlStore

HELD_S = 0.3


async def test_opening_a_new_database_waits_for_a_writer_then_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "townhall.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE elsewhere (x)")  # a new file, still in rollback mode
    writer.execute("BEGIN IMMEDIATE")
    release = threading.Timer(HELD_S, writer.execute, ("COMMIT",))
    release.start()
    try:
        store = await SqlStore(f"sqlite:///{path}").open()
    finally:
        release.join()
        writer.close()
    try:
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await store.close()
