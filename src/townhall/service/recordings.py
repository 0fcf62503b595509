"""The one owner of a node's recording files: where a space's recording is written,
where the finished file goes, and finishing it, after an end or after a crash.

The program (townhall.audience.program) only appends to the partial file it is given;
finishing is here alone, so the partial file is removed once (by the remux that
replaces it, townhall.audience.recorder.finalize_recording) and a recovery that
worked is not reported as a failure (issue 7: both happened when three modules each
finished recordings their own way).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from townhall.audience.recorder import (
    EmptyRecording,
    final_path_for,
    finalize_recording,
    partial_path,
)
from townhall.private_files import make_private_dir

log = logging.getLogger(__name__)


class Recordings:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def partial_path(self, space_id: str) -> Path:
        """Where a live space's recording is appended to (fragmented MP4)."""
        return partial_path(self._directory, space_id)

    def final_path(self, space_id: str) -> Path:
        """The finished recording (faststart .m4a), served after the end."""
        return final_path_for(self.partial_path(space_id))

    def prepare(self, space_id: str) -> Path:
        """The partial file's path, in a private directory that exists."""
        make_private_dir(self._directory)
        return self.partial_path(space_id)

    async def finish(self, space_id: str) -> float | None:
        """Turns the space's partial recording into the final file (in a worker thread:
        about a second per hour of audio); its length in seconds, or None when there was
        none or it held no audio. A failure is logged and the partial file kept for the
        next start to retry."""
        partial = self.partial_path(space_id)
        if not partial.exists():
            return None
        try:
            return await asyncio.to_thread(finalize_recording, partial, self.final_path(space_id))
        except EmptyRecording:
            log.warning("the recording of %s holds no audio; removed", space_id)
            partial.unlink(missing_ok=True)
        except Exception:  # a broken recording must not stop the space from ending
            log.exception("could not finish the recording of %s; partial file kept", space_id)
        return None
