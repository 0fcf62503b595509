"""The one owner of a node's recording files: where a space's recording is written,
where the finished file goes, and finishing it, after an end or after a crash.

The program (townhall.audience.program) only appends to the partial file it is given;
finishing is here alone, so the partial file is removed once (by the remux that
replaces it, townhall.audience.recorder.finalize_recording) and a recovery that
worked is not reported as a failure (issue 7: both happened when three modules each
finished recordings their own way).

A space whose origin crashed is taken over by another (issue 8, failover): the new
origin records the rest in a part of its own, ``ID.2.part.mp4`` beside the crashed
one's ``ID.part.mp4``, and the end joins the parts in order into one file. For the
parts to meet, the origins share the recordings directory (`--shared-recordings`,
e.g. an NFS mount): every fragment is flushed to the kernel as it is made, so the
crashed origin's part holds everything up to the fragment in flight. Without a shared
directory the new origin's recording holds what came after the crash only.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Final

from townhall.audience.recorder import (
    PARTIAL_SUFFIX,
    EmptyRecording,
    final_path_for,
    join_recordings,
    partial_path,
)
from townhall.private_files import make_private_dir

log = logging.getLogger(__name__)

MAX_PARTS: Final = 1_000
"""Parts of one recording at most (one per origin that held the space): bounds the
names tried for a new one."""


class Recordings:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def partial_path(self, space_id: str) -> Path:
        """Where a live space's recording is appended to (fragmented MP4)."""
        return partial_path(self._directory, space_id)

    def final_path(self, space_id: str) -> Path:
        """The finished recording (faststart .m4a), served after the end."""
        return final_path_for(self.partial_path(space_id))

    def part_path(self, space_id: str, number: int) -> Path:
        """Part 1 is the partial file; a take-over's parts are numbered on from 2."""
        if number == 1:
            return self.partial_path(space_id)
        return self._directory / f"{space_id}.{number}{PARTIAL_SUFFIX}"

    def parts(self, space_id: str) -> list[Path]:
        """The space's partial recordings that exist, in the order they were made."""
        found = []
        for number in range(1, MAX_PARTS + 1):
            path = self.part_path(space_id, number)
            if path.exists():
                found.append(path)
            elif number > 1:
                break
        return found

    def prepare(self, space_id: str) -> Path:
        """The path of the space's next part (the partial file for a first start), in a
        private directory that exists."""
        make_private_dir(self._directory)
        for number in range(1, MAX_PARTS + 1):
            path = self.part_path(space_id, number)
            if not path.exists():
                return path
        raise RuntimeError(f"{space_id} has {MAX_PARTS} recording parts already")

    async def finish(self, space_id: str) -> float | None:
        """Turns the space's partial recording (all its parts, joined) into the final file
        (in a worker thread: about a second per hour of audio); its length in seconds,
        or None when there was none or it held no audio. A failure is logged and the
        partial files kept for the next start to retry."""
        parts = self.parts(space_id)
        if not parts:
            return None
        try:
            return await asyncio.to_thread(join_recordings, parts, self.final_path(space_id))
        except EmptyRecording:
            log.warning("the recording of %s holds no audio; removed", space_id)
            for part in parts:
                part.unlink(missing_ok=True)
        except Exception:  # a broken recording must not stop the space from ending
            log.exception("could not finish the recording of %s; partial file kept", space_id)
        return None
