"""Fan-out of one "X is live" to a host's followers: notifications per second and
memory, with the followers in SQLite and in PostgreSQL.

    .venv/bin/python -m bench.notify_fanout [--followers 1000000] [--backends sqlite,postgresql]

For each backend it creates the followers in the database (set-based SQL, not
timed), then runs the Notifier's whole fan-out for one announcement without pacing
(service/notifier.py: a page of followers in key order, one INSERT of the page into
the feed, a push to the event hub, a webhook batch; webhooks off here) and prints
notifications written per second, the number of waves, and how much the process's
peak resident memory grew during the fan-out (bounded: one page at a time, whatever
the follower count). PostgreSQL is started here on 127.0.0.1 (tests/pg_server.py;
fsync off, so an upper bound for a real disk).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pg_server import start_postgres  # noqa: E402
from townhall.domain.pacing import Load  # noqa: E402
from townhall.domain.spaces import User  # noqa: E402
from townhall.service.event_hub import EventHub  # noqa: E402
from townhall.service.notifier import Announcement, Kind, Notifier, NotifierSettings  # noqa: E402
from townhall.service.webhooks import Webhooks, WebhookSettings  # noqa: E402
from townhall.store import SqlStore  # noqa: E402
from townhall.store.follows import SqlFollowStore  # noqa: E402

HOST_ID = "host000000"
POPULATE_CHUNK = 100_000
"""Followers created per statement (each well inside the store's 10 s command timeout)."""
NOW = "2026-01-01T00:00:00+00:00"

SQLITE_SERIES = (
    "WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n WHERE i < :last)"
)
POPULATE = {
    "sqlite": [
        f"INSERT INTO users (id, username, password_hash, created_at) {SQLITE_SERIES} "
        "SELECT printf('f%09d', i), printf('fan%09d', i), 'x', :now FROM n",
        f"INSERT INTO follows (followee_id, follower_id, created_at) {SQLITE_SERIES} "
        "SELECT :host, printf('f%09d', i), :now FROM n",
    ],
    "postgresql": [
        "INSERT INTO users (id, username, password_hash, created_at) "
        "SELECT 'f' || lpad(i::text, 9, '0'), 'fan' || lpad(i::text, 9, '0'), 'x', "
        "now() FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i",
        "INSERT INTO follows (followee_id, follower_id, created_at) "
        "SELECT :host, 'f' || lpad(i::text, 9, '0'), now() "
        "FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i",
    ],
}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _populate(store: SqlStore, followers: int) -> None:
    await store.create_user(HOST_ID, "famous_host", "x")
    for first in range(0, followers, POPULATE_CHUNK):
        params: dict[str, object] = {
            "first": first,
            "last": min(followers, first + POPULATE_CHUNK) - 1,
            "host": HOST_ID,
        }
        if store.dialect == "sqlite":
            params["now"] = NOW
        for statement in POPULATE[store.dialect]:
            await store.run(lambda db, s=statement, p=params: db.execute(text(s), p))


def _constant(load: Load) -> Callable[[str], Awaitable[Load]]:
    async def read(_space: str) -> Load:
        return load

    return read


async def fan_out(url: str, followers: int) -> dict[str, float]:
    store = await SqlStore(url).open()
    try:
        started = time.perf_counter()
        await _populate(store, followers)
        populate_s = time.perf_counter() - started
        webhooks = Webhooks(WebhookSettings())
        idle = Load(admissions_per_s=0, max_listeners=0, listeners=0, waiting=0)
        notifier = Notifier(
            SqlFollowStore(store),
            EventHub(),
            webhooks,
            _constant(idle),
            NotifierSettings(pacing=False, feed_retention_days=0),
        )
        rss_before = _peak_rss_mib()
        started = time.perf_counter()
        progress = await notifier.run(
            Announcement(Kind.LIVE, "space00001", "Live now", User(HOST_ID, "famous_host"))
        )
        seconds = time.perf_counter() - started
        await webhooks.stop()
        assert progress.notified == followers, (progress.notified, followers)
        return {
            "notified": progress.notified,
            "waves": progress.waves,
            "seconds": seconds,
            "per_s": progress.notified / seconds,
            "populate_s": populate_s,
            "peak_rss_growth_mib": _peak_rss_mib() - rss_before,
        }
    finally:
        await store.close()


async def main(arguments: argparse.Namespace) -> None:
    backends = arguments.backends.split(",")
    print(f"fan-out of one announcement to {arguments.followers:,} followers, unpaced")
    print(f"{'backend':<11} {'notified':>10} {'waves':>6} {'s':>7} {'per s':>9} {'RSS +MiB':>9}")
    for backend in backends:
        if backend == "sqlite":
            root = Path(tempfile.mkdtemp(prefix="townhall-fanout-"))
            try:
                result = await fan_out(
                    f"sqlite:///{root / 'townhall.sqlite3'}", arguments.followers
                )
            finally:
                shutil.rmtree(root, ignore_errors=True)
        else:
            server = start_postgres()
            try:
                result = await fan_out(server.url(server.create_database()), arguments.followers)
            finally:
                server.stop()
        print(
            f"{backend:<11} {int(result['notified']):>10,} {int(result['waves']):>6} "
            f"{result['seconds']:>7.1f} {result['per_s']:>9,.0f} "
            f"{result['peak_rss_growth_mib']:>9.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--followers", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    asyncio.run(main(parser.parse_args()))
