"""Microseconds per admission operation on this machine (prints, asserts nothing).

    .venv/bin/python bench/admission_micro.py [--n 50000]

These are the costs the HTTP layer adds per request in a flash crowd: every
join signs a ticket or a queue token, every poll verifies one and re-signs
it, every forged token costs one verify, every request one bucket check.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable

from townhall.admission import (
    AddressLimiter,
    BucketSpec,
    InvalidToken,
    KeyedBuckets,
    QueuePolicy,
    Signer,
    SpentChallenges,
    TicketRefused,
    WaitingRoom,
    check_ticket,
    decide,
    issue_challenge,
    issue_ticket,
    verify_solution,
)
from townhall.admission.proof_of_work import solve

SECRET = b"bench-secret-0123456789abcdef0123"


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    best = float("inf")
    for _ in range(3):  # best of three: the least disturbed run
        started = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - started)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="calls per measurement")
    n = parser.parse_args().n

    signer = Signer(SECRET)
    space = "sp_0123456789ab"
    ticket = issue_ticket(signer, space, "listener_0123456789", 1_000.0, 300).token
    forged = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")

    def refuse_forged(_: int) -> None:
        with contextlib.suppress(TicketRefused):
            check_ticket(signer, forged, space, 1_001.0)

    def refuse_garbage(_: int) -> None:
        with contextlib.suppress(InvalidToken):
            signer.verify("x" * 600)

    room = WaitingRoom.open(signer, space, 0.0, QueuePolicy(rate=1_000.0, burst=10.0))
    queued = [room.arrive(0.0).token for _ in range(10_000)]  # most of them wait
    tail = queued[-1]

    join_room = WaitingRoom.open(signer, space, 0.0, QueuePolicy(rate=1.0, burst=1.0))

    challenge = issue_challenge(signer, 1_000.0, 12)
    solution = solve(challenge.token, 12)

    buckets = KeyedBuckets(rate=10.0, burst=40.0, max_keys=100_000)
    limiter = AddressLimiter(BucketSpec(10.0, 40.0), BucketSpec(200.0, 800.0))
    addresses = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(50_000)]
    addresses6 = [f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1" for i in range(50_000)]

    rows: list[tuple[str, Callable[[int], object]]] = [
        ("sign (ticket)", lambda i: signer.sign(("t", space, "listener_0123456789", i))),
        ("verify (ticket fields)", lambda _: signer.verify(ticket)),
        ("issue_ticket", lambda i: issue_ticket(signer, space, "l", 1_000.0 + i, 300)),
        ("check_ticket (valid)", lambda _: check_ticket(signer, ticket, space, 1_001.0)),
        ("check_ticket (forged, refused)", refuse_forged),
        ("verify (600-char garbage, refused)", refuse_garbage),
        ("waiting room arrive", lambda i: join_room.arrive(1.0 + i * 1e-6)),
        ("waiting room join (arrive+status)", lambda i: join_room.join(2.0 + i * 1e-6)),
        ("waiting room poll (waiting, re-signs)", lambda i: room.poll(tail, 0.001 + i * 1e-7)),
        ("waiting room tick", lambda i: room.tick(0.002 + i * 1e-7)),
        ("issue_challenge", lambda i: issue_challenge(signer, 1_000.0, 16)),
        ("verify_solution", lambda _: verify_solution(signer, challenge.token, solution, 1_001.0)),
        (
            "verify_solution + spent set",
            lambda _: verify_solution(
                signer, challenge.token, solution, 1_001.0, spent=SpentChallenges()
            ),
        ),
        ("KeyedBuckets.take (hot key)", lambda i: buckets.take("10.0.0.1", i * 1e-3)),
        (
            "KeyedBuckets.take (50k keys)",
            lambda i: buckets.take(addresses[i % 50_000], i * 1e-3),
        ),
        ("AddressLimiter.check (IPv4, cached)", lambda i: limiter.check("10.0.0.1", i * 1e-3)),
        (
            "AddressLimiter.check (50k IPv6)",
            lambda i: limiter.check(addresses6[i % 50_000], i * 1e-3),
        ),
        ("capacity decide", lambda i: decide(i, 10.0)),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  µs/call   (best of 3 x {n:,} calls)")
    for name, fn in rows:
        print(f"{name:<{width}}  {per_call_us(fn, n):7.2f}")
    print(
        f"\ntoken sizes: ticket {len(ticket)} chars, queue {len(tail)}, "
        f"challenge {len(challenge.token)}"
    )


if __name__ == "__main__":
    main()
