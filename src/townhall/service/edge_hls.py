"""HLS on an edge: the origin's playlists, parts and segments through a bounded cache.

An edge holds no packager. A listener's HLS request is answered from this cache, or
fetched once from the node that holds the space's stage while every other request
for the same URL waits for that one fetch (like nginx's proxy_cache_lock): a crowd on
an edge costs the origin one request per playlist state, part and segment.

Entries live as long as the origin's Cache-Control says (max-age, capped at
`MAX_TTL_S`): a plain playlist about a second, a blocking reload's answer (keyed on its
query: `_HLS_msn`, `_HLS_part`) a few seconds, a part or segment until the cache is
full. `no-store` answers (a late part's 503) are passed on and never kept. The cache is
bounded in bytes (least recently used go first) and in waiting fetches.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import httpx
from cachetools import TLRUCache

from townhall.admission.signing import Signer
from townhall.domain.errors import Conflict, NotFound, Unavailable
from townhall.edge.relay_token import HEADER as RELAY_HEADER
from townhall.edge.relay_token import issue_relay_token

MAX_CACHE_BYTES: Final = 64 * 1024 * 1024
"""Bodies kept per edge: ~3 h of 48 kbps segments, or every part of many live spaces."""
MAX_TTL_S: Final = 60.0
"""The longest an answer is kept, whatever the origin allows (segments are immutable,
but a live window is a few seconds: older ones are rarely asked for again)."""
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
"""An HLS answer larger than this is refused (a 1 s segment is ~6 KB)."""
MAX_FETCHES: Final = 1_024
"""Distinct URLs being fetched at once; past it new ones are refused (503)."""
FETCH_TIMEOUT_S: Final = 15.0
"""A blocking reload waits at most three target durations at the origin."""
RETRY_AFTER_S: Final = 1.0
PASSED_HEADERS: Final = ("content-type", "cache-control")
MAX_AGE: Final = re.compile(r"max-age=(\d+)")


@dataclass(frozen=True, slots=True)
class HlsAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    expires_at: float
    """Monotonic time past which this answer is not served from the cache."""


def _ttl(cache_control: str) -> float:
    if "no-store" in cache_control or "private" in cache_control:
        return 0.0
    match = MAX_AGE.search(cache_control)
    return min(float(match.group(1)), MAX_TTL_S) if match else 0.0


class EdgeHls:
    def __init__(
        self,
        stage_url: Callable[[str], Awaitable[str | None]],
        signer: Signer | None = None,
        node_id: str = "",
        max_bytes: int = MAX_CACHE_BYTES,
    ) -> None:
        """`stage_url` finds the node that holds a space's stage (Spaces.stage_url).
        With `signer`, each fetch carries a relay token naming `node_id`: the origin
        then knows the poller is an edge, not a listener (this edge counts its own)."""
        self._stage_url = stage_url
        self._signer = signer
        self._node_id = node_id
        self._cache: TLRUCache[str, HlsAnswer] = TLRUCache(
            maxsize=max_bytes,
            ttu=lambda _key, answer, _now: answer.expires_at,
            timer=time.monotonic,
            getsizeof=lambda answer: len(answer.body) + 256,
        )
        self._fetching: dict[str, asyncio.Task[HlsAnswer]] = {}
        self._http: httpx.AsyncClient | None = None
        self.fetched = 0
        """Requests this edge sent to origins (the rest were answered from the cache)."""

    async def get(self, space_id: str, path_and_query: str) -> HlsAnswer:
        """The origin's answer to GET `path_and_query` (under /hls/{space_id}/)."""
        cached = self._cache.get(path_and_query)
        if cached is not None:
            return cached
        fetching = self._fetching.get(path_and_query)
        if fetching is None:
            if len(self._fetching) >= MAX_FETCHES:
                raise Unavailable("this edge is fetching too much at once", RETRY_AFTER_S)
            fetching = asyncio.create_task(self._fetch_and_keep(space_id, path_and_query))
            fetching.add_done_callback(_retrieved)
            self._fetching[path_and_query] = fetching
        # shielded: a listener who leaves does not cancel the fetch the others wait for
        return await asyncio.shield(fetching)

    async def _fetch_and_keep(self, space_id: str, path_and_query: str) -> HlsAnswer:
        try:
            answer = await self._fetch(space_id, path_and_query)
        finally:
            del self._fetching[path_and_query]
        if answer.expires_at > time.monotonic():
            self._cache[path_and_query] = answer
        return answer

    async def _fetch(self, space_id: str, path_and_query: str) -> HlsAnswer:
        origin = await self._stage_url(space_id)
        if origin is None:
            raise NotFound("this space is not live on any node", code="not_live")
        http = self._client()
        try:
            url = origin.rstrip("/") + path_and_query
            async with http.stream("GET", url, headers=self._headers()) as response:
                body = await _read_bounded(response)
        except httpx.HTTPError:
            raise Conflict(
                "the node that holds this space did not answer; retry",
                code="stage_node_unreachable",
            ) from None
        headers = {
            name: response.headers[name] for name in PASSED_HEADERS if name in response.headers
        }
        self.fetched += 1
        expires_at = time.monotonic() + _ttl(headers.get("cache-control", ""))
        return HlsAnswer(response.status_code, headers, body, expires_at)

    def _headers(self) -> dict[str, str]:
        if self._signer is None:
            return {}
        return {RELAY_HEADER: issue_relay_token(self._signer, self._node_id, time.time())}

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S)
        return self._http

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def cached_bytes(self) -> int:
        """What the cache holds now, as it counts it (bodies plus a little each)."""
        return int(self._cache.currsize)

    async def close(self) -> None:
        for fetching in list(self._fetching.values()):
            fetching.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _retrieved(task: asyncio.Task[HlsAnswer]) -> None:
    """Every waiter may have left: the task's outcome is read here so none is lost noisily."""
    if not task.cancelled():
        task.exception()


async def _read_bounded(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Conflict("the origin sent an HLS answer too large", code="hls_too_large")
    return bytes(body)
