"""What one stream worker's listener-count report costs the shared state on Redis: one
update per space (before) vs one pipelined update of the whole report (after).

    scripts/isolated .venv/bin/python -m bench.listener_report [--spaces 10000] [--rounds 3]

Starts a private redis-server (tests/redis_server.py) on 127.0.0.1; every loop is
bounded by --spaces and --rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from redis_server import RedisServer  # noqa: E402
from townhall.state import RedisState  # noqa: E402
from townhall.state.base import MAX_SPACES_PER_NODE_REPORT  # noqa: E402


async def _measure(url: str, spaces: int, rounds: int) -> None:
    state = RedisState(url)
    await state.start()
    counts = {f"space-{i}": i % 50 for i in range(spaces)}
    try:
        per_space, one_update = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            for space_id, count in counts.items():
                await state.report_listeners(space_id, "node-a", count)
            per_space.append(time.perf_counter() - started)
            started = time.perf_counter()
            await state.report_node_listeners("node-a", counts)
            one_update.append(time.perf_counter() - started)
    finally:
        await state.close()
    before, after = statistics.median(per_space), statistics.median(one_update)
    print(f"report of {spaces} spaces, median of {rounds} rounds on Redis:")
    print(f"  one update per space: {before * 1000:8.1f} ms")
    print(f"  one pipelined update: {after * 1000:8.1f} ms  ({before / after:.1f}x faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spaces = max(1, min(args.spaces, MAX_SPACES_PER_NODE_REPORT))
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            asyncio.run(_measure(server.url(0), spaces, max(1, min(args.rounds, 20))))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
