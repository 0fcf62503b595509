"""One simulated listener: snapshot, join, wait as told, stream, hold, leave.

Why it behaves like the listener page and not like a benchmark loop: the
rehearsal must show what people experience when the server is honest with
them. So the listener obeys every instruction (waits ``retry_after_s``,
honours Retry-After, solves a proof of work when asked), backs off on
failures instead of hammering, and, when its stream drops, asks the door
again with its ticket and streams where the answer says, as the listener
page does: the node it streamed from may have died (an edge killed), and the
answer names a live one. A stream refused at once is asked about the same way.
What it was told and what happened are both recorded.

Each listener ends in exactly one outcome (see ``metrics.OUTCOMES``); every
failed request is also counted by kind. Loops are bounded by a number of
attempts, and the run cancels every listener at its deadline.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any
from urllib.parse import urljoin

from townhall.loadtest.audio import audio_format
from townhall.loadtest.client import (
    RequestError,
    Response,
    Stream,
    error_code_of,
    status_kind,
)
from townhall.loadtest.context import RunContext
from townhall.loadtest.hls import MediaPlaylist, parse_media_playlist

THINK_SIGMA = 0.8
"""Spread of the pause before pressing Listen (log-normal around --think-s)."""
SNAPSHOT_ATTEMPTS = 3
"""A page whose details fail to load retries this often before the person gives up."""
MAX_JOIN_POLLS = 10_000
"""Waiting-room polls per listener; far above what any honest retry interval needs."""
MAX_CONSECUTIVE_FAILURES = 5
"""Join attempts in a row without an answer (timeouts, resets) before the listener gives up."""
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
DEFAULT_SHED_RETRY_S = 1.0
"""Pause after a 503 or 429 that carries no Retry-After."""
MAX_RECONNECTS = 3
"""Stream drops survived per listener (each re-joins with its ticket, with backoff)."""
RESUME_ATTEMPTS = 4
"""Re-joins per drop: the first answer may still name the dead node (the registry keeps
a silent node for a few seconds), so a refused stream is asked about again."""
MAX_HLS_POLLS = 10_000
HLS_SEGMENT_LIMIT = 16 * 1024 * 1024
POW_CODE = "pow_required"
MAX_POW_ATTEMPTS = 3
"""Challenges solved per listener before concluding our solutions are not accepted."""


class ListenerFailed(Exception):
    """The listener gave up; the failed request was already counted as an error."""


class ListenerAbandoned(Exception):
    """The listener ran out of patience in the waiting room."""


class Admission:
    __slots__ = ("hls_url", "live_url", "ticket")

    def __init__(self, ticket: str, live_url: str | None, hls_url: str | None):
        self.ticket = ticket
        self.live_url = live_url
        self.hls_url = hls_url


class Listener:
    """State of one listener; ``run`` is its whole life."""

    __slots__ = (
        "address", "arrived", "ctx", "hls", "hold_s", "index", "phase", "started", "think_s",
        "told_at", "told_s",
    )

    def __init__(self, ctx: RunContext, index: int):
        config = ctx.config
        rng = ctx.rng
        self.ctx = ctx
        self.index = index
        self.address = ctx.listener_address(index)
        self.hls = rng.random() < config.hls_fraction
        self.hold_s = rng.lognormvariate(math.log(config.hold_s), config.hold_sigma)
        self.think_s = (
            rng.lognormvariate(math.log(config.think_s), THINK_SIGMA) if config.think_s > 0 else 0.0
        )
        self.arrived = 0.0
        self.phase = ""
        self.started = False
        self.told_s: float | None = None
        """ETA of the first waiting-room answer, and when it came."""
        self.told_at = 0.0

    def _enter(self, phase: str) -> None:
        recorder = self.ctx.recorder
        if self.phase:
            setattr(recorder, self.phase, getattr(recorder, self.phase) - 1)
        if phase:
            setattr(recorder, phase, getattr(recorder, phase) + 1)
        self.phase = phase

    def _ttfa(self, first_audio_at: float) -> float:
        """Time to first audio as the person feels it: page load plus join to audio.

        The pause before pressing Listen is theirs, not the server's, so it is left out.
        """
        return first_audio_at - self.arrived - self.think_s

    def arrive(self) -> None:
        """Counted when due, before its task first runs: a run that ends while the loop is
        behind cancels tasks that never started, and those arrivals must count all the same
        (the count must not depend on how busy the machine is)."""
        self.arrived = asyncio.get_running_loop().time()
        self.ctx.recorder.arrival()
        self._enter("joining")

    def cut_before_start(self) -> None:
        """The run ended before this listener's task ran at all: still joining, unfinished."""
        if not self.started:
            self.ctx.recorder.outcome("unfinished:joining")
            self._enter("")

    async def run(self) -> None:
        """Its whole life, after `arrive`."""
        self.started = True
        recorder = self.ctx.recorder
        try:
            await self._snapshot()
            if self.think_s:
                await asyncio.sleep(self.think_s)
            admission = await self._join()
            if self.hls and admission.hls_url:
                await self._listen_hls(admission)
            elif admission.live_url:
                await self._listen_live(admission)
            else:
                recorder.error("protocol:no_stream_url")
                raise ListenerFailed("join answer without a stream URL")
            recorder.left()
            recorder.outcome("completed")
        except ListenerFailed:
            recorder.outcome("failed")
        except ListenerAbandoned:
            recorder.outcome("abandoned")
        except asyncio.CancelledError:
            recorder.outcome(f"unfinished:{self.phase}")
            if self.phase == "waiting" and self.told_s is not None:
                waited = asyncio.get_running_loop().time() - self.told_at
                recorder.still_waiting_at_end(self.told_s, waited)
            raise
        except Exception:
            recorder.error("client:bug")
            recorder.outcome("failed")
            raise
        finally:
            self._enter("")

    # -- requests ----------------------------------------------------------
    async def _call(self, method: str, url: str, **kwargs: Any) -> Response:
        """A request whose transport failure is counted and re-raised as RequestError.

        ``url`` is a path on the target or an absolute URL the server handed out.
        """
        ctx = self.ctx
        try:
            client, path = ctx.client_for(url)
            return await client.request(
                method, path, local_addr=ctx.bindable(client, self.address),
                timeout=ctx.config.request_timeout_s, **kwargs,
            )
        except RequestError as exc:
            self.ctx.recorder.error(exc.kind)
            raise

    async def _snapshot(self) -> None:
        ctx = self.ctx
        path = ctx.target.snapshot_path(ctx.space)
        for attempt in range(SNAPSHOT_ATTEMPTS):
            try:
                response = await self._call("GET", path, headers=[("Accept", "application/json")])
            except RequestError:
                await asyncio.sleep(_backoff(attempt, ctx))
                continue
            ctx.recorder.snapshot_latency.record(response.ended_at - response.started_at)
            if response.status in (200, 304):
                return
            ctx.recorder.error(status_kind(response.status, response.error_code()))
            await asyncio.sleep(response.retry_after() or _backoff(attempt, ctx))
        raise ListenerFailed("snapshot unavailable")

    async def _join(self) -> Admission:
        ctx = self.ctx
        config = ctx.config
        recorder = ctx.recorder
        loop = asyncio.get_running_loop()
        path = ctx.target.join_path(ctx.space)
        token: str | None = None
        proof: dict[str, Any] | None = None
        failures = 0
        pow_attempts = 0
        for _ in range(MAX_JOIN_POLLS):
            body: dict[str, Any] = {}
            if token is not None:
                body["token"] = token
            if proof is not None:
                body["pow"] = proof
            sent_at = loop.time()
            try:
                response = await self._call("POST", path, json_body=body)
            except RequestError:
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise ListenerFailed("join unreachable") from None
                await asyncio.sleep(_backoff(failures - 1, ctx))
                continue
            failures = 0
            recorder.join_latency.record(response.ended_at - sent_at)
            data = _json_object(response)
            if response.status == 200 and isinstance(data.get("ticket"), str):
                ticket = data["ticket"]
                live_url = _optional_str(data.get("live_url"))
                recorder.admitted_now(ticket, live_url)
                if self.told_s is not None:
                    recorder.waited_then_admitted(self.told_s, loop.time() - self.told_at)
                    self._enter("joining")
                return Admission(ticket, live_url, _optional_str(data.get("hls_url")))
            if response.status == 200 and isinstance(data.get("wait"), dict):
                wait = data["wait"]
                if self.told_s is None:
                    self.told_s = _number(wait.get("eta_s"), 0.0)
                    self.told_at = loop.time()
                    self._enter("waiting")
                if isinstance(wait.get("token"), str):
                    token = wait["token"]
                proof = None
                pause = self._obey(_number(wait.get("retry_after_s"), 1.0))
                if config.patience_s:
                    patience_left = self.told_at + config.patience_s - loop.time()
                    if patience_left <= pause:
                        await asyncio.sleep(max(patience_left, 0.0))
                        raise ListenerAbandoned()
                await asyncio.sleep(pause)
                continue
            if response.status == 200:
                recorder.error("protocol:bad_join_answer")
                raise ListenerFailed("join answer with neither ticket nor wait")
            code = response.error_code()
            if response.status in (401, 403) and code == POW_CODE:
                pow_attempts += 1
                if pow_attempts > MAX_POW_ATTEMPTS:
                    recorder.error("client:pow_rejected")
                    raise ListenerFailed("our proofs of work keep being refused")
                proof = await self._solve(data)
                continue
            recorder.error(status_kind(response.status, code))
            if response.status in (429, 503):
                await asyncio.sleep(self._obey(response.retry_after() or DEFAULT_SHED_RETRY_S))
                continue
            raise ListenerFailed(f"join refused: {response.status} {code}")
        recorder.error("client:too_many_polls")
        raise ListenerFailed("waiting room never admitted us")

    def _obey(self, seconds: float) -> float:
        return min(max(seconds, 0.0), self.ctx.config.max_retry_after_s)

    async def _solve(self, answer: dict[str, Any]) -> dict[str, Any]:
        solver = self.ctx.solver
        if solver is None:
            self.ctx.recorder.error("client:pow_unsupported")
            raise ListenerFailed("proof of work asked, no solver available")
        try:
            return await solver.solve(answer)
        except Exception as exc:
            self.ctx.recorder.error("client:pow_failed")
            raise ListenerFailed(f"proof of work failed: {exc}") from None

    # -- live stream -------------------------------------------------------
    async def _open_live(self, url: str) -> tuple[Stream, float]:
        """The stream and the loop time its first audio byte came in."""
        ctx = self.ctx
        config = ctx.config
        recorder = ctx.recorder
        try:
            client, path = ctx.client_for(url)
            stream = await client.stream(
                path, local_addr=ctx.bindable(client, self.address),
                timeout=config.request_timeout_s,
            )
        except RequestError as exc:
            recorder.error(exc.kind)
            raise ListenerFailed("live stream unreachable") from None
        if stream.status != 200:
            recorder.error(status_kind(stream.status, error_code_of(stream.body)))
            raise ListenerFailed(f"live stream refused: {stream.status}")
        try:
            async with asyncio.timeout(config.first_audio_timeout_s):
                first = await stream.first_byte
        except TimeoutError:
            stream.close()
            recorder.error("timeout:first_audio")
            raise ListenerFailed("no audio") from None
        except RequestError as exc:
            stream.close()
            recorder.error(exc.kind)
            raise ListenerFailed("stream ended before audio") from None
        if audio_format(stream.prefix) is None:
            recorder.unrecognised_audio += 1
        return stream, first

    async def _listen_live(self, admission: Admission) -> None:
        ctx = self.ctx
        recorder = ctx.recorder
        loop = asyncio.get_running_loop()
        assert admission.live_url is not None
        requested = loop.time()
        try:
            stream, first = await self._open_live(admission.live_url)
        except ListenerFailed:  # the node named may have died since (its heartbeat lives on)
            stream, first = await self._resume(admission, 0)
        opened = first
        try:
            recorder.first_audio(self._ttfa(first), first - requested)
            self._enter("streaming")
            leave_at = first + self.hold_s
            for reconnect in range(MAX_RECONNECTS + 1):
                remaining = leave_at - loop.time()
                if remaining <= 0:
                    return
                done, _ = await asyncio.wait({stream.ended}, timeout=remaining)
                if not done:
                    return
                dropped_at = loop.time()
                recorder.stream_drops += 1
                recorder.error(f"stream:dropped_{stream.ended.result()}")
                recorder.streamed(stream.bytes_received, dropped_at - opened)
                if reconnect == MAX_RECONNECTS:
                    raise ListenerFailed("stream kept dropping")
                self._enter("joining")
                recorder.reconnects += 1
                stream, opened = await self._resume(admission, reconnect)
                recorder.resumed(opened - dropped_at)
                self._enter("streaming")
        finally:
            if not stream.ended.done():
                recorder.streamed(stream.bytes_received, loop.time() - opened)
            stream.close()

    async def _resume(self, admission: Admission, reconnect: int) -> tuple[Stream, float]:
        """After a drop: re-join with the ticket (no second wait in line) and stream where
        the answer says; a URL that is refused again is asked about again, with backoff."""
        for attempt in range(RESUME_ATTEMPTS):
            await asyncio.sleep(_backoff(reconnect + attempt, self.ctx))
            try:
                renewed = await self._rejoin(admission.ticket)
                admission.ticket, admission.live_url = renewed.ticket, renewed.live_url
                assert admission.live_url is not None
                return await self._open_live(admission.live_url)
            except ListenerFailed:
                continue
        raise ListenerFailed("could not resume the stream")

    async def _rejoin(self, ticket: str) -> Admission:
        """POST join {"ticket"}: a fresh ticket and where to stream now."""
        path = self.ctx.target.join_path(self.ctx.space)
        try:
            response = await self._call("POST", path, json_body={"ticket": ticket})
        except RequestError:
            raise ListenerFailed("re-join unreachable") from None
        data = _json_object(response)
        live_url = _optional_str(data.get("live_url"))
        if response.status != 200 or not isinstance(data.get("ticket"), str) or not live_url:
            self.ctx.recorder.error(status_kind(response.status, response.error_code()))
            raise ListenerFailed(f"re-join refused: {response.status}")
        return Admission(data["ticket"], live_url, _optional_str(data.get("hls_url")))

    # -- HLS ---------------------------------------------------------------
    async def _playlist(self, path: str) -> MediaPlaylist:
        response = await self._get_ok(path)
        try:
            return parse_media_playlist(response.body.decode("utf-8", "replace"))
        except ValueError:
            self.ctx.recorder.error("protocol:bad_playlist")
            raise ListenerFailed("bad playlist") from None

    async def _get_ok(self, path: str, body_limit: int = HLS_SEGMENT_LIMIT) -> Response:
        try:
            response = await self._call("GET", path, body_limit=body_limit)
        except RequestError:
            raise ListenerFailed(f"GET {path} failed") from None
        if response.status != 200:
            self.ctx.recorder.error(status_kind(response.status, response.error_code()))
            raise ListenerFailed(f"GET {path}: {response.status}")
        return response

    async def _listen_hls(self, admission: Admission) -> None:
        recorder = self.ctx.recorder
        loop = asyncio.get_running_loop()
        assert admission.hls_url is not None
        playlist_path = admission.hls_url
        requested = loop.time()
        playlist = await self._playlist(playlist_path)
        for _ in range(MAX_HLS_POLLS):
            if playlist.segments or playlist.ended:
                break
            await asyncio.sleep(playlist.target_duration_s)
            playlist = await self._playlist(playlist_path)
        if playlist.init_uri:
            await self._get_ok(urljoin(playlist_path, playlist.init_uri))
        segments = playlist.start_segments()
        if not segments:
            recorder.error("protocol:empty_playlist")
            raise ListenerFailed("playlist has no segments")
        first_response = await self._get_ok(urljoin(playlist_path, segments[0].uri))
        first = first_response.first_body_at or first_response.ended_at
        if audio_format(first_response.body[:16]) is None:
            recorder.unrecognised_audio += 1
        recorder.first_audio(self._ttfa(first), first - requested)
        self._enter("streaming")
        last = segments[0].sequence
        leave_at = first + self.hold_s
        for _ in range(MAX_HLS_POLLS):
            for segment in playlist.after(last):
                await self._get_ok(urljoin(playlist_path, segment.uri))
                last = segment.sequence
            remaining = leave_at - loop.time()
            if remaining <= 0 or playlist.ended:
                return
            await asyncio.sleep(min(playlist.target_duration_s, remaining))
            if loop.time() >= leave_at:
                return
            playlist = await self._playlist(playlist_path)


def _backoff(attempt: int, ctx: RunContext) -> float:
    """Exponential with full jitter: failures spread out instead of retrying in step."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt)
    return ctx.rng.uniform(ceiling / 2, ceiling)


def _json_object(response: Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return float(value)


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def start_listener(ctx: RunContext, index: int) -> tuple[Listener, asyncio.Task[None]]:
    """A listener that has arrived now, and the task that runs it."""
    listener = Listener(ctx, index)
    listener.arrive()
    return listener, asyncio.get_running_loop().create_task(listener.run())
