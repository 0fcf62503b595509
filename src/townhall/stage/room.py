"""The live stage of one space: its speakers' peers, the mixer and the 20 ms clock.

Each tick takes one frame from every speaker's jitter queue, mixes the program
(handed to the sink: encoder, recorder) and one mix-minus per speaker (queued
on their outgoing track), and updates who is speaking. Everything in the tick
is synchronous numpy work in the event loop; the network side (offers, peers,
state changes) is async and only ever adds or removes speakers between ticks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from townhall.config import StageSettings
from townhall.media import PcmFrame, ProgramSink, silence
from townhall.stage.clock import ClockStats, FrameClock
from townhall.stage.metronome import Metronome
from townhall.stage.mixer import mix
from townhall.stage.offer import InvalidOffer, validate_offer
from townhall.stage.speaker import ENDED_STATES, Speaker, SpeakerStats
from townhall.stage.speaking import SpeakingDetector

logger = logging.getLogger(__name__)

ERROR_LOG_EVERY = 500
"""A failing callback is logged the first time and then once per this many failures."""

__all__ = ["InvalidOffer", "RoomStats", "StageRoom", "StageUnavailable"]


class StageUnavailable(RuntimeError):
    """The offer was not answered: the room is stopped, or disconnect() was called for this
    user while their offer was being answered (they left the stage meanwhile)."""


@dataclass(frozen=True)
class RoomStats:
    clock: ClockStats
    program_errors: int
    speakers: dict[str, SpeakerStats]


class StageRoom:
    """The live stage of one space: one aiortc peer per speaker, the mixer and its 20 ms clock.

    `program(frame)` is called every 20 ms once started, with a fresh frame the sink may keep.
    `on_change()` is called synchronously whenever `speaking()` or `connected` changes; it
    must be cheap (mark a snapshot dirty), it runs inside the mixer tick.

    ICE host addresses are process-wide: the composition root calls
    `townhall.stage.ice.use_host_addresses(settings.ice_host_addresses)` once at start-up.

    With a `metronome` (the node's, see metronome.py) the room ticks on its beat;
    without one it runs a clock of its own.
    """

    def __init__(
        self,
        space_id: str,
        settings: StageSettings,
        program: ProgramSink,
        on_change: Callable[[], None] | None = None,
        metronome: Metronome | None = None,
    ) -> None:
        self.space_id = space_id
        self._settings = settings
        self._program = program
        self._on_change = on_change
        self._speakers: dict[str, Speaker] = {}
        self._muted: set[str] = set()
        self._connected: frozenset[str] = frozenset()
        self._detector = SpeakingDetector(settings.speaking_threshold_dbfs)
        self._clock = FrameClock(self._tick) if metronome is None else metronome.beat(self._tick)
        self._closing: set[asyncio.Task[None]] = set()
        self._disconnects: dict[str, int] = {}  # per user: how many disconnect() calls so far
        self._stopped = False
        self._program_errors = 0
        self._change_errors = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the mixer clock (idempotent)."""
        self._ensure_running()
        self._clock.start()

    async def stop(self) -> None:
        """Stop the clock and close every peer (idempotent)."""
        self._stopped = True
        await self._clock.stop()
        speakers = list(self._speakers.values())
        self._speakers.clear()
        await asyncio.gather(*(s.close() for s in speakers), *self._closing)
        self._refresh_connected()

    # -- speakers ----------------------------------------------------------------------------

    async def connect(self, user_id: str, offer_sdp: str) -> str:
        """Answer a speaker's offer; replaces the user's previous peer, if any.

        Raises InvalidOffer (a ValueError) when the offer cannot carry Opus audio, and
        StageUnavailable when the room stopped or the user was disconnected meanwhile.
        """
        self._ensure_running()
        validate_offer(offer_sdp)
        disconnects = self._disconnects.get(user_id, 0)
        speaker = Speaker(user_id, self._on_speaker_state, self._settings.connect_timeout_s)
        try:
            answer = await speaker.answer(offer_sdp)
            # Either may have happened while ICE was gathering.
            self._ensure_running()
            if self._disconnects.get(user_id, 0) != disconnects:
                raise StageUnavailable(f"{user_id} was disconnected while connecting")
        except BaseException:
            await speaker.close()
            raise
        previous = self._speakers.get(user_id)
        self._speakers[user_id] = speaker
        if previous is not None:
            self._close_later(previous)
        self._refresh_connected()
        return answer

    async def disconnect(self, user_id: str) -> None:
        """Close the user's peer, including one still being set up by connect()."""
        self._disconnects[user_id] = self._disconnects.get(user_id, 0) + 1
        speaker = self._speakers.pop(user_id, None)
        if speaker is not None:
            self._refresh_connected()
            await speaker.close()

    def set_muted(self, user_id: str, muted: bool) -> None:
        """Mute state is kept per user, before, during and across connections."""
        if muted:
            self._muted.add(user_id)
        else:
            self._muted.discard(user_id)

    def is_muted(self, user_id: str) -> bool:
        return user_id in self._muted

    def speaking(self) -> frozenset[str]:
        """Unmuted users above the speaking threshold over the last ~300 ms (held ~300 ms)."""
        return self._detector.speaking

    @property
    def connected(self) -> frozenset[str]:
        """Users whose connection is established (media can flow both ways)."""
        return self._connected

    @property
    def peers(self) -> frozenset[str]:
        """Users with a peer, connected or still connecting."""
        return frozenset(self._speakers)

    def stats(self) -> RoomStats:
        return RoomStats(
            clock=ClockStats(**vars(self._clock.stats)),
            program_errors=self._program_errors,
            speakers={user: s.stats() for user, s in self._speakers.items()},
        )

    # -- internals ---------------------------------------------------------------------------

    def _tick(self) -> None:
        users = list(self._speakers)
        speakers = [self._speakers[u] for u in users]
        frames: list[PcmFrame] = []
        for speaker in speakers:
            frame = speaker.inbound.pop()
            frames.append(silence() if frame is None else frame)
        unmuted = [u not in self._muted for u in users]
        result = mix(frames, unmuted)
        self._emit_program(result.program)
        for speaker, minus in zip(speakers, result.minus, strict=True):
            speaker.outbound.push(minus)
        levels = {
            u: float(level)
            for u, level, on in zip(users, result.levels_dbfs, unmuted, strict=True)
            if on
        }
        if self._detector.update(levels):
            self._notify()

    def _emit_program(self, frame: PcmFrame) -> None:
        try:
            self._program(frame)
        except Exception:
            self._program_errors += 1
            if self._program_errors % ERROR_LOG_EVERY == 1:
                logger.exception(
                    "space %s: program sink failed (%d times)", self.space_id, self._program_errors
                )

    def _on_speaker_state(self, speaker: Speaker) -> None:
        if self._speakers.get(speaker.user_id) is not speaker:
            return  # a replaced or removed peer winding down
        if speaker.state in ENDED_STATES:
            del self._speakers[speaker.user_id]
            self._close_later(speaker)
        self._refresh_connected()

    def _refresh_connected(self) -> None:
        connected = frozenset(u for u, s in self._speakers.items() if s.state == "connected")
        if connected != self._connected:
            self._connected = connected
            self._notify()

    def _notify(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:
            self._change_errors += 1
            if self._change_errors % ERROR_LOG_EVERY == 1:
                logger.exception("space %s: on_change failed", self.space_id)

    def _close_later(self, speaker: Speaker) -> None:
        task = asyncio.get_running_loop().create_task(speaker.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _ensure_running(self) -> None:
        if self._stopped:
            raise StageUnavailable(f"stage of space {self.space_id} is stopped")
