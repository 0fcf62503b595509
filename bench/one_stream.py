"""What one stream per ticket per node costs (prints, asserts nothing).

    .venv/bin/python -m bench.one_stream [--listeners 10000]

* the worker's stream open: ``LiveFanout.attach`` alone (what a worker did per
  stream before) against attach + ``Openings.opened`` (what it does now), per
  call, best of three, so the ratio is the cost on the worker's open rate;
* the report: bytes of the ``opened`` part when ``--listeners`` streams opened
  since the last report (one space, anonymous listener ids as the door issues
  them), in how many reports they go, and the origin's time to take them
  (``TicketHolders.record`` + the answer) on a map already holding as many.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections.abc import Callable

from townhall.audience.fanout import LiveFanout
from townhall.config import AudioSettings
from townhall.edge.one_stream import (
    MAX_OPENED_PER_REPORT,
    Opening,
    Openings,
    TicketHolders,
    to_wire,
)


class NullTransport(asyncio.WriteTransport):
    """A socket that takes everything: the bench times our code, not the kernel's."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def best_us_per_call(run: Callable[[int], None], n: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        run(n)
        best = min(best, time.perf_counter() - started)
    return best / n * 1e6


def in_reports(openings: list[Opening]) -> list[list[Opening]]:
    """As a worker sends them: at most MAX_OPENED_PER_REPORT per report."""
    step = MAX_OPENED_PER_REPORT
    return [openings[i : i + step] for i in range(0, len(openings), step)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listeners", type=int, default=10_000)
    args = parser.parse_args()
    n = args.listeners
    ids = ["anon-" + secrets.token_urlsafe(9) for _ in range(n)]
    transport = NullTransport()

    def attach_only(count: int) -> None:
        fanout = LiveFanout(AudioSettings())
        for listener_id in ids[:count]:
            fanout.attach(transport, listener_id, replace=True)

    def attach_and_note(count: int) -> None:
        fanout = LiveFanout(AudioSettings())
        openings = Openings()
        for listener_id in ids[:count]:
            listener = fanout.attach(transport, listener_id, replace=True)
            openings.opened("space-0001", listener_id, listener.attached_at)

    before = best_us_per_call(attach_only, n)
    after = best_us_per_call(attach_and_note, n)
    print(
        f"stream open, {n} listeners: attach {before:.2f} us, attach + note {after:.2f} us "
        f"(open rate x{before / after:.2f}: {1e6 / before:,.0f}/s -> {1e6 / after:,.0f}/s)"
    )

    now = time.monotonic()
    opened = [
        Opening("space-0001", listener_id, now + i * 1e-4) for i, listener_id in enumerate(ids)
    ]
    reports = [opened[i : i + MAX_OPENED_PER_REPORT] for i in range(0, n, MAX_OPENED_PER_REPORT)]
    sizes = [len(json.dumps({"opened": to_wire(r)}, separators=(",", ":"))) for r in reports]
    print(
        f"report: {n} openings = {sum(sizes):,} bytes in {len(reports)} report(s) "
        f"(largest {max(sizes):,} B; {sum(sizes) / n:.1f} B per opening)"
    )

    holders = TicketHolders()
    holders.record("w0", opened)  # the map already holds every ticket on another worker
    later = [Opening(o.space_id, o.listener_id, o.at + 100.0) for o in opened]
    started = time.perf_counter()
    for report in [
        later[i : i + MAX_OPENED_PER_REPORT] for i in range(0, n, MAX_OPENED_PER_REPORT)
    ]:
        holders.record("w1", report)
        to_wire(holders.cuts_for("w1"))
    took = time.perf_counter() - started
    cuts = sum(len(holders.cuts_for("w0")) for _ in range(len(reports)))
    print(
        f"origin: {n} reported openings, all superseding: {took * 1e3:.1f} ms "
        f"({took / n * 1e6:.2f} us each); {cuts} cuts queued for the older worker"
    )


if __name__ == "__main__":
    main()
