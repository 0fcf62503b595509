"""What one stream per ticket per node costs (prints, asserts nothing).

    .venv/bin/python -m bench.one_stream [--listeners 10000]

* the worker's stream open, our code's part of it: the stream gate's ticket check
  and ``LiveFanout.attach`` (what a worker did per stream before) against the same
  + ``Openings.opened`` (what it does now), per call, best of three; the ratio is
  an upper bound of the cost on the worker's open rate (the kernel's accept and
  the HTTP parse come on top of both);
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

from townhall.admission.capacity import Capacity
from townhall.admission.signing import Signer
from townhall.admission.stream_gate import StreamGate
from townhall.admission.tickets import issue_ticket
from townhall.audience.fanout import LiveFanout
from townhall.config import AudioSettings
from townhall.edge.one_stream import (
    MAX_OPENED_PER_REPORT,
    Opening,
    Openings,
    TicketHolders,
    to_wire,
)

SPACE = "space-0001"


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

    signer = Signer(b"bench-secret-0123456789abcdef0123")
    gate = StreamGate(signer, Capacity())
    now = time.time()
    tickets = [issue_ticket(signer, SPACE, i, now, 600).token for i in ids]

    def open_before(count: int) -> None:
        fanout = LiveFanout(AudioSettings())
        for ticket in tickets[:count]:
            claims = gate.admit(ticket, SPACE, now, removed=(), listeners=0, streaming=())
            fanout.attach(transport, claims.listener_id, replace=True)

    def open_now(count: int) -> None:
        fanout = LiveFanout(AudioSettings())
        openings = Openings()
        for ticket in tickets[:count]:
            claims = gate.admit(ticket, SPACE, now, removed=(), listeners=0, streaming=())
            listener = fanout.attach(transport, claims.listener_id, replace=True)
            openings.opened(SPACE, claims.listener_id, listener.attached_at)

    def note_only(count: int) -> None:
        openings = Openings()
        for listener_id in ids[:count]:
            openings.opened(SPACE, listener_id, 1.0)

    print(f"Openings.opened alone: {best_us_per_call(note_only, n):.2f} us per stream")
    before = best_us_per_call(open_before, n)
    after = best_us_per_call(open_now, n)
    print(
        f"stream open ({n}): gate + attach {before:.2f} us, + note {after:.2f} us "
        f"(open rate x{before / after:.2f}: {1e6 / before:,.0f}/s -> {1e6 / after:,.0f}/s)"
    )

    now = time.monotonic()
    opened = [Opening(SPACE, listener_id, now + i * 1e-4) for i, listener_id in enumerate(ids)]
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
