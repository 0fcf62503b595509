"""A stream worker's copy of each space's snapshot: GET /api/spaces/{id} from memory.

The origin rebuilds a space's snapshot at most once a second and serves it with
``Cache-Control: max-age=1``; a worker keeps the origin's very answer (status, ETag,
body) and serves it for ``fresh_s``, then serves the copy it has for up to
``stale_s`` more while one call to the origin refreshes it (single flight per
space: a crowd asking for one space costs the origin one request per worker per
``fresh_s``). An unknown space's 404 is kept the same way, so a flood of made-up
ids costs the origin one request per id per worker per ``fresh_s``, bounded by
``max_spaces`` entries (past it the copies are dropped and refetched on demand).

Every answer is prebuilt as the bytes written to the socket (keep-alive or not,
200 or 304): the hot path is a dict lookup, a clock read and one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from townhall.api.error_body import error_body
from townhall.edge.origin_calls import OriginAnswer, OriginUnreachable

log = logging.getLogger(__name__)

FRESH_S: Final = 0.5
"""Half the snapshot's max-age: a copy here is never more than ~1.5 s behind the space
(the origin's own rebuild tick included)."""
STALE_S: Final = 5.0
"""The snapshot's stale-while-revalidate: served while a refresh is under way."""
MAX_SPACES: Final = 10_000
KEPT_HEADERS: Final = ("etag", "cache-control", "content-type", "retry-after")
"""The origin's headers a worker repeats (the rest are the connection's own)."""
CORS: Final = b"access-control-allow-origin: *\r\n"
REASONS: Final = {200: "OK", 304: "Not Modified", 404: "Not Found", 410: "Gone"}

Fetch = Callable[[str], Awaitable[OriginAnswer]]


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n".encode("latin-1")


@dataclass(slots=True)
class CachedSnapshot:
    """One space's answer as the origin gave it, prebuilt for the socket."""

    status: int
    etag: bytes | None
    body: bytes
    fetched_at: float
    """time.monotonic() of the call that brought it."""
    keep_alive: bytes = b""
    close: bytes = b""
    head_keep_alive: bytes = b""
    head_close: bytes = b""
    not_modified_keep_alive: bytes = b""
    not_modified_close: bytes = b""

    @classmethod
    def of(cls, answer: OriginAnswer, fetched_at: float) -> CachedSnapshot:
        kept = "".join(
            f"{name}: {answer.headers[name]}\r\n" for name in KEPT_HEADERS if name in answer.headers
        ).encode("latin-1")
        etag_text = answer.headers.get("etag")
        etag = etag_text.encode("latin-1") if etag_text else None
        entry = cls(answer.status, etag, answer.body, fetched_at)
        head = _status_line(answer.status) + kept + CORS
        length = f"content-length: {len(answer.body)}\r\n".encode("latin-1")
        entry.head_keep_alive = head + length + b"\r\n"
        entry.head_close = head + length + b"connection: close\r\n\r\n"
        entry.keep_alive = entry.head_keep_alive + answer.body
        entry.close = entry.head_close + answer.body
        not_modified = _status_line(304) + b"".join(
            f"{name}: {answer.headers[name]}\r\n".encode("latin-1")
            for name in ("etag", "cache-control")
            if name in answer.headers
        ) + CORS
        entry.not_modified_keep_alive = not_modified + b"\r\n"
        entry.not_modified_close = not_modified + b"connection: close\r\n\r\n"
        return entry

    def response(self, if_none_match: bytes | None, keep_alive: bool, head_only: bool) -> bytes:
        """The bytes to write: 304 if the client has this version (the origin's test:
        the ETag appears in If-None-Match), else the answer (its head only for HEAD)."""
        if if_none_match is not None and self.etag is not None and self.etag in if_none_match:
            return self.not_modified_keep_alive if keep_alive else self.not_modified_close
        if head_only:
            return self.head_keep_alive if keep_alive else self.head_close
        return self.keep_alive if keep_alive else self.close


def unreachable_answer() -> OriginAnswer:
    """What a worker says when the origin does not answer (never kept)."""
    body = error_body("origin_unreachable", "the server is not answering; try again shortly")
    headers = {"content-type": "application/json", "cache-control": "no-store", "retry-after": "1"}
    return OriginAnswer(503, headers, body)


@dataclass
class SnapshotStats:
    hits: int = 0
    stale_hits: int = 0
    fetches: int = 0
    fetch_failures: int = 0
    evictions: int = 0


@dataclass
class SnapshotCache:
    fetch: Fetch
    """GET the space's snapshot from the origin (townhall.edge.origin_calls)."""
    fresh_s: float = FRESH_S
    stale_s: float = STALE_S
    max_spaces: int = MAX_SPACES
    stats: SnapshotStats = field(default_factory=SnapshotStats)
    _entries: dict[str, CachedSnapshot] = field(default_factory=dict)
    _fetching: dict[str, asyncio.Future[CachedSnapshot]] = field(default_factory=dict)

    def cached(self, space_id: str) -> CachedSnapshot | None:
        """The copy to serve now without waiting (fresh, or stale while a refresh runs),
        or None: then await `get`."""
        entry = self._entries.get(space_id)
        if entry is None:
            return None
        age = time.monotonic() - entry.fetched_at
        if age < self.fresh_s:
            self.stats.hits += 1
            return entry
        if age < self.fresh_s + self.stale_s:
            self.stats.stale_hits += 1
            self._refresh(space_id)
            return entry
        return None

    def get(self, space_id: str) -> asyncio.Future[CachedSnapshot]:
        """The space's snapshot once fetched (one call per space in flight)."""
        return self._refresh(space_id)

    def __len__(self) -> int:
        return len(self._entries)

    def _refresh(self, space_id: str) -> asyncio.Future[CachedSnapshot]:
        pending = self._fetching.get(space_id)
        if pending is None:
            if len(self._fetching) >= self.max_spaces:  # bounded like the entries
                failed: asyncio.Future[CachedSnapshot] = asyncio.get_running_loop().create_future()
                failed.set_result(CachedSnapshot.of(unreachable_answer(), 0.0))
                return failed
            pending = self._fetching[space_id] = asyncio.ensure_future(self._fetch(space_id))
        return pending

    async def _fetch(self, space_id: str) -> CachedSnapshot:
        self.stats.fetches += 1
        try:
            answer = await self.fetch(space_id)
        except OriginUnreachable as exc:
            self.stats.fetch_failures += 1
            log.warning("snapshot of %s: origin unreachable: %s", space_id, exc)
            stale = self._entries.get(space_id)
            return stale if stale is not None else CachedSnapshot.of(unreachable_answer(), 0.0)
        finally:
            self._fetching.pop(space_id, None)
        entry = CachedSnapshot.of(answer, time.monotonic())
        if answer.status in (200, 404):
            if space_id not in self._entries and len(self._entries) >= self.max_spaces:
                self.stats.evictions += len(self._entries)
                self._entries.clear()
            self._entries[space_id] = entry
        else:
            with contextlib.suppress(KeyError):
                del self._entries[space_id]
        return entry
