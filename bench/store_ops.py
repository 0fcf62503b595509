"""What the store's operations cost, per backend, side by side in one run.

    .venv/bin/python -m bench.store_ops [--ops 2000] [--seconds 10] [--concurrency 16]

Backends: the first release's hand-written SQLite store ("sqlite-before"), the
SQLAlchemy Core store on SQLite ("sqlite-after") and on a PostgreSQL started here
(initdb + postgres on 127.0.0.1, as tests/pg_server.py does; fsync off there, so
PostgreSQL's figures are an upper bound for a real disk). For each operation it
runs `--ops` calls (or stops at `--seconds`), one after another, and prints calls
per second; `get_space` is also run with `--concurrency` callers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pg_server import start_postgres  # noqa: E402
from townhall.domain.spaces import Space, SpaceState  # noqa: E402
from townhall.store import SqliteStore, SqlStore  # noqa: E402

SPACES_TO_LIST = 50


async def _rate(
    op: Callable[[int], Awaitable[Any]], ops: int, seconds: float, concurrency: int = 1
) -> float:
    """Calls per second of `op(i)` over at most `ops` calls and `seconds` seconds."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller(first: int) -> None:
        nonlocal done
        for i in range(first, ops, concurrency):
            if time.perf_counter() > deadline:
                return
            await op(i)
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(concurrency)))
    return done / (time.perf_counter() - began)


async def measure(store: Any, args: argparse.Namespace) -> dict[str, float]:
    now = datetime.now(UTC)
    host = await store.create_user("host", "host", "hash")
    space = Space("space-0", "Bench", host, SpaceState.LIVE, now, started_at=now)
    await store.save_space(space)
    for n in range(1, SPACES_TO_LIST):
        await store.save_space(
            Space(f"space-{n}", "Bench", host, SpaceState.LIVE, now, started_at=now)
        )
    await store.create_token("token", "host", "session", now + timedelta(days=1))
    ops, seconds = args.ops, args.seconds
    return {
        "create_user": await _rate(
            lambda i: store.create_user(f"u{i}", f"user{i}", "hash"), ops, seconds
        ),
        "save_space": await _rate(
            lambda i: store.save_space(Space("space-0", f"Bench {i}", host, SpaceState.LIVE, now)),
            ops,
            seconds,
        ),
        "get_space": await _rate(lambda i: store.get_space("space-0"), ops, seconds),
        f"get_space x{args.concurrency}": await _rate(
            lambda i: store.get_space("space-0"), ops, seconds, args.concurrency
        ),
        "user_for_token": await _rate(lambda i: store.user_for_token("token", now), ops, seconds),
        f"list_spaces({SPACES_TO_LIST})": await _rate(
            lambda i: store.list_spaces([SpaceState.LIVE], SPACES_TO_LIST), ops, seconds
        ),
    }


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    work = Path(tempfile.mkdtemp(prefix="townhall-store-bench-"))
    postgres = start_postgres()
    try:
        before = await SqliteStore(work / "before.sqlite3").open()
        results["sqlite-before"] = await measure(before, args)
        await before.close()
        backends = {
            "sqlite-after": f"sqlite:///{work / 'after.sqlite3'}",
            "postgresql": postgres.url(postgres.create_database()),
        }
        for name, url in backends.items():
            store = await SqlStore(url).open()
            results[name] = await measure(store, args)
            await store.close()
    finally:
        postgres.stop()
        shutil.rmtree(postgres.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return results


def print_table(results: dict[str, dict[str, float]]) -> None:
    names = list(results)
    ops = list(results[names[0]])
    print(f"{'calls/s':<22}" + "".join(f"{name:>15}" for name in names) + f"{'after/before':>14}")
    for op in ops:
        row = "".join(f"{results[name][op]:>15,.0f}" for name in names)
        ratio = results["sqlite-after"][op] / results["sqlite-before"][op]
        print(f"{op:<22}{row}{ratio:>14.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="calls per operation (2000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="cap per operation (10)")
    parser.add_argument("--concurrency", type=int, default=16, help="callers at once (16)")
    print_table(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
