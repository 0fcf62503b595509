"""One request from a stream worker to its origin's API, and its whole answer.

The worker's snapshot cache (townhall.edge.snapshots) and joins
(townhall.edge.joins) ask the origin a few times a second per space, and a join it
cannot answer itself is forwarded whole. Each call is its own connection (the
origin's accept is cheap next to the request), carries a fresh relay token, and
reads at most ``MAX_ANSWER_BYTES``: the origin is ours, but a worker never buffers
without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from townhall.edge.relay import Origin
from townhall.edge.relay_token import HEADER, issue_relay_token

MAX_ANSWER_BYTES: Final = 1 << 20
"""A snapshot of a full stage with long titles is a few KiB; a join answer under 1."""
MAX_HEAD_BYTES: Final = 16 * 1024
CALL_TIMEOUT_S: Final = 5.0


class OriginUnreachable(Exception):
    """No whole answer from the origin in time."""


@dataclass(frozen=True, slots=True)
class OriginAnswer:
    status: int
    headers: dict[str, str]
    """Lower-case names; the last value of a repeated header."""
    body: bytes


def parse_answer_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def call_origin(
    origin: Origin,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    timeout_s: float = CALL_TIMEOUT_S,
) -> OriginAnswer:
    """``method path`` on the origin with ``headers`` (and our relay token); raises
    OriginUnreachable when no whole answer within ``timeout_s`` and the bounds."""
    token = issue_relay_token(origin.signer, origin.node_id, time.time())
    lines = [f"{method} {path} HTTP/1.1", f"{HEADER}: {token}", "Connection: close"]
    has_host = False
    for name, value in headers:
        has_host = has_host or name.lower() == "host"
        lines.append(f"{name}: {value}")
    if not has_host:
        lines.append(f"Host: {origin.host}:{origin.port}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                origin.host, origin.port, limit=MAX_HEAD_BYTES
            )
            writer.write(request)
            status, answer_headers = parse_answer_head(await reader.readuntil(b"\r\n\r\n"))
            length = answer_headers.get("content-length")
            if length is not None and length.isdigit():
                if int(length) > MAX_ANSWER_BYTES:
                    raise ValueError(f"an answer of {length} bytes")
                content = await reader.readexactly(int(length))
            else:
                content = await reader.read(MAX_ANSWER_BYTES + 1)
                if len(content) > MAX_ANSWER_BYTES:
                    raise ValueError("an answer past the bound")
    except (OSError, TimeoutError, ValueError, EOFError, asyncio.LimitOverrunError) as exc:
        raise OriginUnreachable(repr(exc)) from None
    finally:
        if writer is not None:
            writer.close()
    return OriginAnswer(status, answer_headers, content)
