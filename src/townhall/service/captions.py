"""Which spaces have live captions, their recognizers on this node, and their cues.

A space asks for captions when it is created (`"captions": bool`, on by default where
this node runs a captioner; kept with its record, townhall.domain.captions). When it
goes live here a Captioner (its own recognizer process) is started if the node-wide
limit allows; past the limit the space is live without captions, never refused, and
its record says why (`captions_withheld`). At the end the cues are written as WebVTT beside
the recording, which is what the replay and the API serve afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path

from townhall.audience.program import ProgramOutput
from townhall.captions.captioner import Captioner
from townhall.captions.cues import Cue, parse_webvtt, webvtt
from townhall.captions.recognizer import RecognizerConfig
from townhall.config import CaptionSettings
from townhall.domain.captions import CaptionsWithheld, captions_outcome
from townhall.domain.errors import NotFound
from townhall.private_files import make_private_dir

log = logging.getLogger(__name__)

def captions_path(recordings_dir: Path, space_id: str) -> Path:
    """The replay's captions: beside `<space_id>.m4a`."""
    return recordings_dir / f"{space_id}.vtt"


class Captions:
    def __init__(self, settings: CaptionSettings, recordings_dir: Path) -> None:
        self._settings = settings
        self._recordings_dir = recordings_dir
        self._config = RecognizerConfig(model_dir=settings.model)
        self._running: dict[str, Captioner] = {}
        self._programs: dict[str, ProgramOutput] = {}
        """Every space live on this node (its HLS carries the captions rendition)."""
        self.refused_at_limit = 0
        """Spaces that asked for captions but went live past the node-wide limit."""

    @property
    def available(self) -> bool:
        """Whether this node runs a captioner (the default of the per-space option)."""
        return self._settings.active

    def open(
        self, space_id: str, program: ProgramOutput, *, wanted: bool
    ) -> tuple[Captioner | None, CaptionsWithheld | None]:
        """A space goes live here: its recognizer starts when it wants one and the node
        has room; else it goes live without, and the second item says why."""
        self._programs[space_id] = program
        if space_id in self._running:
            return self._running[space_id], None
        withheld = captions_outcome(
            wanted,
            available=self.available,
            running=len(self._running),
            limit=self._settings.max_spaces,
        )
        if withheld is CaptionsWithheld.NODE_LIMIT:
            self.refused_at_limit += 1
            log.warning(
                "space %s goes live without captions: %d captioned spaces is this node's limit",
                space_id,
                self._settings.max_spaces,
            )
        if not wanted or withheld is not None:
            return None, withheld
        captioner = Captioner(
            space_id,
            self._config,
            queue_seconds=self._settings.queue_seconds,
            max_cues=self._settings.max_cues,
        )
        captioner.start()
        self._running[space_id] = captioner
        return captioner, None

    async def close(self, space_id: str, *, keep: bool) -> None:
        """Stops the recognizer; with `keep` (the space was recorded) its cues are
        written beside the recording for the replay."""
        self._programs.pop(space_id, None)
        captioner = self._running.get(space_id)
        if captioner is None:
            return
        try:
            await captioner.stop()
            stats = captioner.stats
            log.info(
                "captions of %s: %d cues; %.1f s of audio dropped (recognizer behind)",
                space_id,
                stats.cues,
                stats.seconds_dropped,
            )
            if keep:
                make_private_dir(self._recordings_dir)
                path = captions_path(self._recordings_dir, space_id)
                path.write_text(webvtt(captioner.track.since(None)), encoding="utf-8")
        finally:
            self._running.pop(space_id, None)

    def is_on(self, space_id: str) -> bool:
        """Captions being made for this space here, or kept from its replay."""
        return space_id in self._running or captions_path(self._recordings_dir, space_id).exists()

    def running(self) -> dict[str, Captioner]:
        return dict(self._running)

    def program(self, space_id: str) -> ProgramOutput:
        """The program of a space live on this node (for its HLS renditions)."""
        program = self._programs.get(space_id)
        if program is None:
            raise NotFound("this space is not live on this server", code="not_live")
        return program

    def captioner(self, space_id: str) -> Captioner | None:
        return self._running.get(space_id)

    def cues(self, space_id: str, since_s: float | None = None) -> list[Cue]:
        captioner = self._running.get(space_id)
        if captioner is not None:
            return captioner.track.since(since_s)
        return [cue for cue in self._replay(space_id) if since_s is None or cue.end_s > since_s]

    def webvtt(self, space_id: str) -> str:
        captioner = self._running.get(space_id)
        if captioner is not None:
            return webvtt(captioner.track.since(None))
        return webvtt(self._replay(space_id))

    def _replay(self, space_id: str) -> list[Cue]:
        path = captions_path(self._recordings_dir, space_id)
        try:
            return parse_webvtt(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound("this space has no captions here", code="no_captions") from None
