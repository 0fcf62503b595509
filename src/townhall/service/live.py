"""The media side of every live space on this node: stage in, program out.

A LiveRoom couples one StageRoom (speakers, mixer) to one ProgramOutput
(encoder, live fan-out, HLS, recording). The control plane tells it who is
muted and who is gone; it tells the control plane when its listener count or
its speaking set changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from townhall.audience.program import ProgramOutput
from townhall.config import Settings
from townhall.domain.captions import CaptionsWithheld, captions_outcome
from townhall.domain.stage import Stage
from townhall.media import PcmFrame, ProgramSink
from townhall.service.captions import Captions
from townhall.service.recordings import Recordings
from townhall.stage import Metronome, StageRoom

log = logging.getLogger(__name__)


def both(program: ProgramSink, captions: ProgramSink) -> ProgramSink:
    """The mix to the program, then to the captioner (which only queues it)."""

    def push(frame: PcmFrame) -> None:
        program(frame)
        captions(frame)

    return push


@dataclass
class LiveRoom:
    space_id: str
    stage: StageRoom
    program: ProgramOutput
    recording: Path | None
    removed: set[str] = field(default_factory=set)
    """Listener ids refused on this room's stream, mirrored from the stage."""
    captions_withheld: CaptionsWithheld | None = None
    """Why the room has no captioner although its space asked for one."""


class LiveRooms:
    def __init__(
        self,
        settings: Settings,
        on_change: Callable[[str], None],
        recordings: Recordings | None = None,
        captions: Captions | None = None,
        metronome: Metronome | None = None,
    ) -> None:
        self._settings = settings
        self._metronome = metronome or Metronome()
        """One 20 ms clock for every stage of the node (townhall.stage.metronome)."""
        self.recordings = recordings or Recordings(settings.recordings_dir)
        """Where rooms record, and who finishes the recordings."""
        self._captions = captions
        self._on_change = on_change
        self._rooms: dict[str, LiveRoom] = {}

    def get(self, space_id: str) -> LiveRoom | None:
        return self._rooms.get(space_id)

    def __iter__(self) -> Iterator[LiveRoom]:
        """A copy: rooms may close while the caller awaits between them."""
        return iter(list(self._rooms.values()))

    async def open(self, space_id: str, record: bool, captions: bool = False) -> LiveRoom:
        """`captions`: the space asked for live captions (it may get them or a reason)."""
        if space_id in self._rooms:
            return self._rooms[space_id]
        recording = None
        if record:
            recording = self.recordings.prepare(space_id)
        program = ProgramOutput(self._settings.audio, recording_path=recording)
        program.live.on_count_change = lambda _count: self._on_change(space_id)
        captioner, withheld = None, captions_outcome(captions, available=False, running=0, limit=0)
        if self._captions is not None:
            captioner, withheld = self._captions.open(space_id, program, wanted=captions)
        stage = StageRoom(
            space_id,
            self._settings.stage,
            program.push if captioner is None else both(program.push, captioner.feed),
            on_change=lambda: self._on_change(space_id),
            metronome=self._metronome,
        )
        room = LiveRoom(space_id, stage, program, recording, captions_withheld=withheld)
        self._rooms[space_id] = room
        await stage.start()
        return room

    async def close(self, space_id: str, finish_recording: bool = True) -> float | None:
        """Stops the room; returns the recording's length in seconds, if one was made.
        Without `finish_recording` the partial file stays as it is, a part of the
        space's recording that the origin holding the space at its end joins."""
        room = self._rooms.pop(space_id, None)
        if room is None:
            return None
        await room.stage.stop()
        room.program.close()
        if self._captions is not None:
            try:
                await self._captions.close(space_id, keep=room.recording is not None)
            except Exception:  # captions must not stop the space from ending
                log.exception("could not close the captions of %s", space_id)
        if room.recording is None or not finish_recording:
            return None
        return await self.recordings.finish(space_id)

    async def close_all(self) -> None:
        for room in list(self._rooms.values()):
            await self.close(room.space_id)

    async def apply_stage(self, space_id: str, stage: Stage) -> None:
        """Mirror the control plane's decisions into the media: mutes, exits, removals."""
        room = self._rooms.get(space_id)
        if room is None:
            return
        for user_id in room.stage.connected:
            if not stage.is_on_stage(user_id):
                await room.stage.disconnect(user_id)
        for user_id, seat in stage.seats.items():
            room.stage.set_muted(user_id, seat.muted)
        for user_id in stage.removed - room.removed:
            room.program.live.cut(user_id)
        room.removed = set(stage.removed)
