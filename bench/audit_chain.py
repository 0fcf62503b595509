"""What the hash-chained audit log costs: appends per second (one writer, and
`--writers` at once racing for the head) and how long verifying the whole chain takes.

    .venv/bin/python -m bench.audit_chain [--entries 2000] [--writers 8]

On SQLite (a file in a temp dir) and on a PostgreSQL started here as tests/pg_server.py
does (fsync off: an upper bound for a real disk). Every write is bounded by --entries.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pg_server import start_postgres  # noqa: E402
from townhall.domain.moderation import audit_entry_text, verify_chain  # noqa: E402
from townhall.store import SqlStore  # noqa: E402
from townhall.store.moderation import SqlModerationStore  # noqa: E402

PAGE = 1_000


def _entry(i: int) -> str:
    return audit_entry_text(datetime.now(UTC), "operator", "end_space", f"space-{i}", {"i": i})


async def _measure(name: str, url: str, entries: int, writers: int) -> None:
    store = await SqlStore(url).open()
    try:
        audit = SqlModerationStore(store.run)
        started = time.perf_counter()
        for i in range(entries):
            await audit.append_audit(_entry(i))
        one = entries / (time.perf_counter() - started)

        async def writer(w: int) -> None:
            for i in range(entries // writers):
                await audit.append_audit(_entry(w * entries + i))

        started = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        many = (entries // writers * writers) / (time.perf_counter() - started)

        started = time.perf_counter()
        check = verify_chain([])
        while check.ok and (page := await audit.audit_entries(check.entries, PAGE)):
            check = verify_chain(page, check)
        verify_s = time.perf_counter() - started
        print(
            f"{name:11s} appends/s: {one:7.0f} (1 writer) {many:7.0f} ({writers} writers)"
            f"   verify {check.entries} entries: {verify_s * 1000:6.0f} ms  ok={check.ok}"
        )
    finally:
        await store.close()


async def _run(entries: int, writers: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="townhall-audit-"))
    postgres = start_postgres()
    try:
        await _measure("sqlite", f"sqlite:///{directory / 'townhall.sqlite3'}", entries, writers)
        url = postgres.url(postgres.create_database())
        await _measure("postgresql", url, entries, writers)
    finally:
        postgres.stop()
        shutil.rmtree(postgres.root, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=2_000)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(_run(args.entries, args.writers))


if __name__ == "__main__":
    main()
