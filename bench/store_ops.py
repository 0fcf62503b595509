"""What the store's operations cost, per backend, side by side in one run.

    .venv/bin/python -m bench.store_ops [--ops 2000] [--seconds 10] [--rounds 3]

Backends: the first release's hand-written SQLite store ("sqlite-before"), the
SQLAlchemy Core store on SQLite ("sqlite-after") and on a PostgreSQL started here
(initdb + postgres on 127.0.0.1, as tests/pg_server.py does; fsync off there, so
PostgreSQL's figures are an upper bound for a real disk). For each operation it
runs `--ops` calls (or stops at `--seconds`), one after another, and prints calls
per second, best of `--rounds` with the backends interleaved; `get_space` is also run
with `--concurrency` callers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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

from bench.first_release_store import SqliteStore  # noqa: E402
from pg_server import start_postgres  # noqa: E402
from townhall.domain.spaces import Space, SpaceState  # noqa: E402
from townhall.store import SqlStore  # noqa: E402

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


async def prepare(store: Any) -> dict[str, Callable[[int], Awaitable[Any]]]:
    """Rows to read, and each measured operation as `op(i)`."""
    now = datetime.now(UTC)
    host = await store.create_user("host", "host", "hash")
    for n in range(SPACES_TO_LIST):
        live = Space(f"space-{n}", "Bench", host, SpaceState.LIVE, now, started_at=now)
        await store.save_space(live)
    await store.create_token("token", "host", "session", now + timedelta(days=1))
    users = itertools.count()

    def create_user(_: int) -> Awaitable[Any]:
        n = next(users)
        return store.create_user(f"u{n}", f"user{n}", "hash")

    return {
        "create_user": create_user,
        "save_space": lambda i: store.save_space(
            Space("space-0", f"Bench {i}", host, SpaceState.LIVE, now, started_at=now)
        ),
        "get_space": lambda i: store.get_space("space-0"),
        "user_for_token": lambda i: store.user_for_token("token", now),
        f"list_spaces({SPACES_TO_LIST})": lambda i: store.list_spaces(
            [SpaceState.LIVE], SPACES_TO_LIST
        ),
    }


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Best of `--rounds` per operation and backend, backends interleaved, so that load
    from elsewhere on the machine weighs on all of them alike."""
    work = Path(tempfile.mkdtemp(prefix="townhall-store-bench-"))
    postgres = start_postgres()
    stores: dict[str, Any] = {}
    try:
        stores["sqlite-before"] = await SqliteStore(work / "before.sqlite3").open()
        stores["sqlite-after"] = await SqlStore(f"sqlite:///{work / 'after.sqlite3'}").open()
        stores["postgresql"] = await SqlStore(postgres.url(postgres.create_database())).open()
        operations = {name: await prepare(store) for name, store in stores.items()}
        results: dict[str, dict[str, float]] = {name: {} for name in stores}
        concurrent = f"get_space x{args.concurrency}"
        for _ in range(args.rounds):
            for op in [*operations["postgresql"], concurrent]:
                for name, ops in operations.items():
                    callers = args.concurrency if op == concurrent else 1
                    call = ops["get_space" if op == concurrent else op]
                    rate = await _rate(call, args.ops, args.seconds, callers)
                    results[name][op] = max(rate, results[name].get(op, 0.0))
        return results
    finally:
        for store in stores.values():
            await store.close()
        postgres.stop()
        shutil.rmtree(postgres.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


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
    parser.add_argument("--rounds", type=int, default=3, help="best of this many (3)")
    print_table(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
