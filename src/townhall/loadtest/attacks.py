"""Attack mixes run beside the crowd: join floods, forged tickets, snapshot floods, slowloris.

Why beside and not instead: the defences are only proven if honest listeners
keep getting in *while* the attack runs, so every attack shares the run's
clock, report and timeline with the crowd. Floods come from the few
``--source-addresses`` so per-address and per-prefix limits can act on them.

Each attack records results under its name (``recorder.attacks[name]``):
what the server answered ("ticket", "wait", "4xx:429:rate_limited", ...),
transport failures by kind, and "skipped:inflight" when the attacker's own
bound on requests in flight was reached (so a slow server cannot make the
attacker grow without limit).
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from townhall.loadtest.client import USER_AGENT, RequestError, error_code_of, status_kind
from townhall.loadtest.context import RunContext

PACE_TICK_S = 0.01
"""Attack requests are released in batches this often."""
MAX_INFLIGHT = 2_000
"""Requests in flight per attack; more are skipped and counted."""
SLOWLORIS_MAX_BYTES = 64 * 1024
"""Bytes one slowloris connection trickles at most (then it only holds the socket)."""
SLOWLORIS_REOPEN_S = 0.5
"""Pause before a slot whose connection was cut opens the next one."""
SLOWLORIS_BODY_BYTES = 4096
"""Content-Length a body-trickling slowloris announces and never completes."""
SLOWLORIS_KEEP_BYTES = 64
"""Leading bytes kept from what the server answers a slowloris connection."""
FORGERY_KINDS = ("random", "tampered", "other_space")
TAMPER_FROM_END = 5
"""Which character of a real ticket to change: inside the MAC, and not the last
base64 character, whose low bits may be padding that decoders ignore."""
_B64URL = string.ascii_letters + string.digits + "-_"


UNFINISHED = "unfinished"
"""The result of an attack request the run's end cut while it was in flight."""


async def paced(
    ctx: RunContext,
    name: str,
    rate_at: Callable[[float], float],
    action: Callable[[int], Awaitable[str]],
) -> None:
    """Call ``action(i)`` at ``rate_at(run time)`` per second until the deadline."""
    loop = asyncio.get_running_loop()
    recorder = ctx.recorder
    inflight: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        started = loop.time()
        try:
            result = await action(i)
        except RequestError as exc:
            result = exc.kind
        except ValueError:
            result = "protocol:bad_json"
        except asyncio.CancelledError:
            # The run ended with it in flight: counted, so that a server's own tally
            # (which may or may not include it) can be checked against the report.
            recorder.attack(name, UNFINISHED)
            raise
        recorder.attack(name, result, loop.time() - started)

    credit = 0.0
    last = loop.time()
    count = 0
    try:
        while last < ctx.deadline:
            await asyncio.sleep(PACE_TICK_S)
            now = loop.time()
            credit += rate_at(now - ctx.started_at) * (now - last)
            last = now
            due = int(credit)
            credit -= due
            for _ in range(due):
                if len(inflight) >= MAX_INFLIGHT:
                    recorder.attack(name, "skipped:inflight")
                    continue
                task = loop.create_task(one(count))
                count += 1
                inflight.add(task)
                task.add_done_callback(inflight.discard)
    finally:
        for task in inflight:
            task.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)


def join_flood(ctx: RunContext) -> Callable[[int], Awaitable[str]]:
    """Fresh joins without a queue token from few addresses: each would take a queue place."""
    path = ctx.target.join_path(ctx.space)

    async def action(i: int) -> str:
        response = await ctx.client.request(
            "POST", path, json_body={}, local_addr=ctx.attacker_address(i),
            timeout=ctx.config.request_timeout_s,
        )
        if response.status == 200:
            data = response.json()
            return "ticket" if "ticket" in data else "wait" if "wait" in data else "200:other"
        return status_kind(response.status, response.error_code())

    return action


def snapshot_flood(ctx: RunContext) -> Callable[[int], Awaitable[str]]:
    """Snapshot requests that skip the cache (no If-None-Match): the details path under load."""
    path = ctx.target.snapshot_path(ctx.space)

    async def action(i: int) -> str:
        response = await ctx.client.request(
            "GET", path, local_addr=ctx.attacker_address(i), timeout=ctx.config.request_timeout_s
        )
        if response.status in (200, 304):
            return "ok"
        return status_kind(response.status, response.error_code())

    return action


def forge_ticket(kind: str, real: str | None, rng: random.Random) -> str:
    """A ticket the server must refuse. Pure apart from ``rng``."""
    if kind == "tampered" and real and len(real) > TAMPER_FROM_END:
        i = len(real) - TAMPER_FROM_END
        replacement = rng.choice([c for c in _B64URL if c != real[i]])
        return real[:i] + replacement + real[i + 1 :]
    if kind == "other_space" and real:
        return real  # a genuine ticket, presented for another space's stream
    return "".join(rng.choice(_B64URL) for _ in range(rng.randint(16, 96)))


def _with_ticket(live_path: str, ticket: str) -> str:
    parts = urlsplit(live_path)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ticket"]
    query.append(("ticket", ticket))
    return f"{parts.path}?{urlencode(query)}"


def forged_tickets(ctx: RunContext) -> Callable[[int], Awaitable[str]]:
    """Live-stream requests with random, tampered, or misplaced tickets; any 2xx is a breach."""
    rng = random.Random(ctx.config.seed + 7)
    guess = ctx.target.live_path_guess(ctx.space)

    async def action(i: int) -> str:
        recorder = ctx.recorder
        kind = FORGERY_KINDS[i % len(FORGERY_KINDS)]
        real = recorder.sample_ticket
        if real is None and kind != "random":
            kind = "random"
        client, live = ctx.client_for(recorder.sample_live_url or guess)
        if kind == "other_space":
            live = live.replace(f"/{ctx.space}", f"/{ctx.space}x", 1)
        path = _with_ticket(live, forge_ticket(kind, real, rng))
        stream = await client.stream(
            path, local_addr=ctx.bindable(client, ctx.attacker_address(i)),
            timeout=ctx.config.request_timeout_s,
        )
        if 200 <= stream.status < 300:
            stream.close()
            return f"ACCEPTED:{kind}"
        return f"refused:{status_kind(stream.status, error_code_of(stream.body))}"

    return action


class _SlowProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lost: asyncio.Future[None] = loop.create_future()
        self.answer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if len(self.answer) < SLOWLORIS_KEEP_BYTES:
            self.answer += data[: SLOWLORIS_KEEP_BYTES - len(self.answer)]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


def slowloris_bytes(ctx: RunContext, slot: int) -> bytes:
    """What one slowloris connection trickles: endless headers, or headers then a slow body."""
    host = ctx.target.host_header
    if slot % 2:
        head = (
            f"POST {ctx.target.join_path(ctx.space)} HTTP/1.1\r\nHost: {host}\r\n"
            f"User-Agent: {USER_AGENT}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {SLOWLORIS_BODY_BYTES}\r\n\r\n"
        ).encode()
        return head + b"{" + b" " * (SLOWLORIS_BODY_BYTES - 1)
    head = f"GET {ctx.target.snapshot_path(ctx.space)} HTTP/1.1\r\nHost: {host}\r\n".encode()
    pad = b"".join(b"X-Pad-%d: %d\r\n" % (n, n) for n in range(SLOWLORIS_MAX_BYTES // 16))
    return (head + pad)[:SLOWLORIS_MAX_BYTES]


async def slowloris_slot(ctx: RunContext, slot: int) -> None:
    """Keep one slow connection open, reopening when the server cuts it, until the deadline.

    Even slots never finish their headers; odd slots send full headers and then
    trickle the body. Results: "cut:<status>" or "cut:silent" with the time it
    took the server, or "survived" if the connection was still open at the end.
    """
    loop = asyncio.get_running_loop()
    recorder = ctx.recorder
    config = ctx.config
    payload = slowloris_bytes(ctx, slot)
    attempt = 0
    while loop.time() < ctx.deadline:
        address = ctx.attacker_address(slot + attempt * config.slowloris)
        attempt += 1
        try:
            protocol = await ctx.client.connect_raw(
                lambda: _SlowProtocol(loop), address, config.request_timeout_s
            )
        except RequestError as exc:
            recorder.attack("slowloris", exc.kind)
            await asyncio.sleep(SLOWLORIS_REOPEN_S)
            continue
        transport = protocol.transport
        assert transport is not None
        opened = loop.time()
        sent = 0
        try:
            while True:
                if sent < len(payload):
                    transport.write(payload[sent : sent + 1])
                    sent += 1
                wait = min(config.slowloris_interval_s, ctx.deadline - loop.time())
                if wait <= 0:
                    recorder.attack("slowloris", "survived")
                    return
                done, _ = await asyncio.wait({protocol.lost}, timeout=wait)
                if done:
                    recorder.attack("slowloris", _cut_result(protocol.answer), loop.time() - opened)
                    break
        finally:
            transport.abort()
        await asyncio.sleep(SLOWLORIS_REOPEN_S)


def _cut_result(answer: bytes) -> str:
    parts = answer.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return f"cut:{parts[1].decode()}"
    return "cut:silent"


def start_attacks(
    ctx: RunContext, legit_rate: Callable[[float], float]
) -> list[asyncio.Task[None]]:
    """Tasks for every attack the configuration switches on; they end at the deadline."""
    config = ctx.config
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    floods = (
        ("join_flood", config.join_flood, join_flood),
        ("snapshot_flood", config.snapshot_flood, snapshot_flood),
        ("forged_tickets", config.forged_tickets, forged_tickets),
    )
    for name, rate, make in floods:
        if rate.active:
            def rate_at(t: float, rate=rate) -> float:  # type: ignore[no-untyped-def]
                return rate.at(legit_rate(t))

            tasks.append(loop.create_task(paced(ctx, name, rate_at, make(ctx)), name=name))
    tasks.extend(
        loop.create_task(slowloris_slot(ctx, slot), name=f"slowloris-{slot}")
        for slot in range(config.slowloris)
    )
    return tasks
