"""Overload then lull: the waiting room's rehearsal after a short overload (issue 6).

A snapshot crowd (many concurrent ``GET /api/spaces/{id}``) pushes the node's
loop lag past its guard while people join, each from its own loopback /24;
then the crowd stops. Every joiner obeys the answers (waits ``retry_after_s``,
polls with its token) until it holds a ticket. What is judged:

* everybody is admitted before the deadline;
* the time from the lull to the first admission: the lull is when the node
  answers again after the crowd's last answer (its loop stays stalled for a
  moment after that), and admission has resumed when the node's own counter
  of admitted numbers moves (or nobody is left waiting);
* the ETA each joiner was told by its first answer against the wait that
  followed (relative error, p50 and p90); every later answer is reported too;
* automatic attack mode stayed off (3,000 distinct addresses are a crowd, not
  an attack).

Every loop is bounded in count and time; only loopback addresses are used.
``python -m townhall.loadtest.lull URL SPACE_ID`` prints the figures and exits
0 when every target was met, 1 otherwise (scripts/rehearse runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from statistics import quantiles
from typing import Any, Final
from urllib.parse import urlsplit

from townhall.edge.limits import raise_open_file_limit
from townhall.loadtest.client import HttpClient, RequestError

DEFAULT_SNAPSHOT_CROWD: Final = 5_000
DEFAULT_JOINERS: Final = 3_000
DEFAULT_OVERLOAD_S: Final = 4.0
DEFAULT_GETS_EACH: Final = 20
"""Each member of the snapshot crowd asks at most this often (and only for overload_s)."""
DEFAULT_DEADLINE_S: Final = 45.0
"""Everybody must be admitted within this long of the start (issue 6)."""
DEFAULT_JOINS_AFTER_S: Final = 0.3
"""The joins start once the snapshot crowd is on its way."""
REQUEST_TIMEOUT_S: Final = 20.0
STATS_EVERY_S: Final = 0.2
ERROR_PAUSE_S: Final = 1.0
TARGET_RESUME_S: Final = 2.0
"""Admission resumes within this long of the lull."""
TARGET_ETA_P90: Final = 0.25
"""The ETA of the first answer is within this relative error of the wait (p90)."""
JOINER_FIRST_OCTET: Final = 10
SNAPSHOT_FIRST_OCTET: Final = 100


def joiner_address(i: int) -> str:
    """Each joiner in its own /24: 127.a.b.1 (the loopback /8 is all local on Linux)."""
    return f"127.{JOINER_FIRST_OCTET + i // 256}.{i % 256}.1"


def snapshot_address(i: int) -> str:
    """The snapshot crowd, 250 per /16, apart from the joiners' prefixes."""
    return f"127.{SNAPSHOT_FIRST_OCTET + i // 250}.{i % 250}.2"


@dataclass(frozen=True)
class LullConfig:
    host: str
    port: int
    space_id: str
    snapshot_crowd: int = DEFAULT_SNAPSHOT_CROWD
    joiners: int = DEFAULT_JOINERS
    overload_s: float = DEFAULT_OVERLOAD_S
    gets_each: int = DEFAULT_GETS_EACH
    deadline_s: float = DEFAULT_DEADLINE_S

    def __post_init__(self) -> None:
        if self.joiners > (SNAPSHOT_FIRST_OCTET - JOINER_FIRST_OCTET) * 256:
            raise ValueError("too many joiners for their own /24 each")
        if self.snapshot_crowd > (256 - SNAPSHOT_FIRST_OCTET) * 250:
            raise ValueError("snapshot crowd too large for its address range")


@dataclass
class Joiner:
    answers: list[tuple[float, float]] = field(default_factory=list)
    """(when, eta_s) of every waiting-room answer, on the run's clock."""
    admitted_at: float | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class LullResult:
    config: LullConfig
    joiners: list[Joiner]
    start: float
    lull_at: float
    resumed_after_s: float | None
    lull_stats: dict[str, Any]
    final_stats: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        admitted = [j.admitted_at - self.start for j in self.joiners if j.admitted_at]
        queue = self.lull_stats.get("queues", {}).get(self.config.space_id, {})
        first = eta_errors(self.joiners, first_only=True)
        every = eta_errors(self.joiners, first_only=False)
        return {
            "joiners": len(self.joiners),
            "queued": sum(1 for j in self.joiners if j.answers),
            "admitted": len(admitted),
            "last_admitted_s": round(max(admitted), 2) if admitted else None,
            "lull_s": round(self.lull_at - self.start, 2),
            "waiting_at_lull": queue.get("waiting", 0),
            "loop_lag_at_lull_ms": self.lull_stats.get("loop_lag_ms"),
            "resumed_after_lull_s": _round(self.resumed_after_s),
            "max_eta_told_s": max((eta for j in self.joiners for _, eta in j.answers), default=0),
            "eta_error_first_answer": _p50_p90(first),
            "eta_error_every_answer": _p50_p90(every),
            "shed": self.final_stats.get("counts", {}).get("shed", 0),
            "attack_mode": self.final_stats.get("attack_mode"),
            "errors": sorted({e for j in self.joiners for e in j.errors})[:10],
        }


def eta_errors(joiners: list[Joiner], *, first_only: bool) -> list[float]:
    """|wait − told| ÷ wait for the answers of admitted joiners (the first one, or all). Pure."""
    errors = []
    for joiner in joiners:
        if joiner.admitted_at is None:
            continue
        for when, eta in joiner.answers[:1] if first_only else joiner.answers:
            wait = joiner.admitted_at - when
            if wait > 0:
                errors.append(abs(wait - eta) / wait)
    return errors


def misses(summary: dict[str, Any], deadline_s: float) -> list[str]:
    """The targets this rehearsal missed (empty when it succeeded). Pure."""
    missed = []
    if summary["admitted"] < summary["joiners"]:
        missed.append(f"{summary['joiners'] - summary['admitted']} never admitted")
    elif summary["last_admitted_s"] > deadline_s:
        missed.append(f"the last admitted after {summary['last_admitted_s']} s > {deadline_s}")
    if not summary["queued"]:
        missed.append("nobody waited: there was no overload to rehearse")
    resumed = summary["resumed_after_lull_s"]
    if summary["waiting_at_lull"] and (resumed is None or resumed > TARGET_RESUME_S):
        missed.append(f"admission resumed {resumed} s after the lull (> {TARGET_RESUME_S})")
    p90 = summary["eta_error_first_answer"]["p90"]
    if p90 is None or p90 > TARGET_ETA_P90:
        missed.append(f"ETA error p90 {p90} > {TARGET_ETA_P90}")
    if summary["attack_mode"]:
        missed.append("attack mode switched on")
    return missed


async def run(config: LullConfig) -> LullResult:
    raise_open_file_limit()
    control = HttpClient(config.host, config.port)
    crowd = HttpClient(config.host, config.port, max_idle=config.snapshot_crowd + config.joiners)
    loop = asyncio.get_running_loop()
    snapshot_path = f"/api/spaces/{config.space_id}"
    join_path = f"{snapshot_path}/join"
    try:
        start = loop.time()
        deadline = start + config.deadline_s
        overload_until = start + config.overload_s
        gets = [
            asyncio.create_task(
                _ask_snapshot(crowd, snapshot_path, snapshot_address(i), overload_until, config)
            )
            for i in range(config.snapshot_crowd)
        ]
        await asyncio.sleep(DEFAULT_JOINS_AFTER_S)
        joiners = [Joiner() for _ in range(config.joiners)]
        joins = [
            asyncio.create_task(
                _join_until_admitted(crowd, join_path, joiner_address(i), joiners[i], deadline)
            )
            for i in range(config.joiners)
        ]
        await asyncio.gather(*gets)
        lull_stats = await _stats(control)  # answered: the node's loop is free again
        lull_at = loop.time()
        resumed = await _until_admission_resumes(control, config.space_id, lull_stats, deadline)
        resumed_after = None if resumed is None else resumed - lull_at
        await asyncio.gather(*joins)
        final_stats = await _stats(control)
    finally:
        await crowd.aclose()
        await control.aclose()
    return LullResult(config, joiners, start, lull_at, resumed_after, lull_stats, final_stats)


async def _ask_snapshot(
    http: HttpClient, path: str, address: str, until: float, config: LullConfig
) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(config.gets_each):
        if loop.time() >= until:
            return
        try:
            await http.request("GET", path, local_addr=address, timeout=REQUEST_TIMEOUT_S)
        except RequestError:
            await asyncio.sleep(ERROR_PAUSE_S)


async def _join_until_admitted(
    http: HttpClient, path: str, address: str, me: Joiner, deadline: float
) -> None:
    """Join, then come back when told, with the token, until a ticket or the deadline."""
    loop = asyncio.get_running_loop()
    body: dict[str, str] = {}
    while loop.time() < deadline:
        try:
            answer = await http.request(
                "POST", path, json_body=body, local_addr=address, timeout=REQUEST_TIMEOUT_S
            )
        except RequestError as error:
            me.errors.append(error.kind)
            await asyncio.sleep(ERROR_PAUSE_S)
            continue
        if answer.status != 200:
            me.errors.append(f"{answer.status}:{answer.error_code()}")
            await asyncio.sleep(answer.retry_after() or ERROR_PAUSE_S)
            continue
        document = answer.json()
        if "ticket" in document:
            me.admitted_at = loop.time()
            return
        wait = document["wait"]
        me.answers.append((loop.time(), float(wait["eta_s"])))
        body = {"token": wait["token"]}
        await asyncio.sleep(min(float(wait["retry_after_s"]), max(0.0, deadline - loop.time())))


async def _stats(http: HttpClient) -> dict[str, Any]:
    answer = await http.request("GET", "/api/stats", timeout=REQUEST_TIMEOUT_S)
    stats: dict[str, Any] = answer.json()
    return stats


async def _until_admission_resumes(
    http: HttpClient, space_id: str, at_lull: dict[str, Any], deadline: float
) -> float | None:
    """When the node's admitted counter first moves past its value at the lull (or nobody
    waits any more); None if not before the deadline."""
    loop = asyncio.get_running_loop()
    admitted_then = at_lull.get("queues", {}).get(space_id, {}).get("admitted", 0)
    while loop.time() < deadline:
        queue = (await _stats(http)).get("queues", {}).get(space_id, {})
        if queue.get("admitted", 0) > admitted_then or not queue.get("waiting", 0):
            return loop.time()
        await asyncio.sleep(STATS_EVERY_S)
    return None


def _p50_p90(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        only = round(values[0], 3) if values else None
        return {"n": len(values), "p50": only, "p90": only}
    cuts = quantiles(values, n=10, method="inclusive")
    return {"n": len(values), "p50": round(cuts[4], 3), "p90": round(cuts[8], 3)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m townhall.loadtest.lull", description=__doc__)
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("space_id")
    parser.add_argument("--snapshot-crowd", type=int, default=DEFAULT_SNAPSHOT_CROWD)
    parser.add_argument("--joiners", type=int, default=DEFAULT_JOINERS)
    parser.add_argument("--overload-s", type=float, default=DEFAULT_OVERLOAD_S)
    parser.add_argument("--deadline-s", type=float, default=DEFAULT_DEADLINE_S)
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the rehearsal only talks to this machine (127.0.0.1 or ::1)")
    config = LullConfig(
        host="::1" if url.hostname == "::1" else "127.0.0.1",
        port=url.port or 80,
        space_id=args.space_id,
        snapshot_crowd=args.snapshot_crowd,
        joiners=args.joiners,
        overload_s=args.overload_s,
        deadline_s=args.deadline_s,
    )
    summary = asyncio.run(run(config)).summary()
    print(json.dumps(summary, indent=2))
    missed = misses(summary, config.deadline_s)
    for miss in missed:
        print(f"MISSED: {miss}", file=sys.stderr)
    print("overload then lull:", "targets met" if not missed else "targets missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
