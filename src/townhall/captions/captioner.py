"""One live space's captioner: the bounded queue to its recognizer process and back.

`feed` is called by the mixer clock every 20 ms inside the event loop, so it only
batches the frame and, every `CHUNK_MS`, hands the batch to a bounded queue without
waiting: when the recognizer has fallen `queue_seconds` behind, the batch is dropped
and counted, and the program goes on. Cues come back on a second queue that a small
task drains into the space's `CaptionTrack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
from dataclasses import dataclass

from townhall.captions import recognizer
from townhall.captions.cues import CaptionTrack, Cue
from townhall.media import SAMPLE_RATE, PcmFrame

log = logging.getLogger(__name__)

CHUNK_MS = 200
"""Audio per queue item: ten mixer frames, so the pipe sees five writes a second."""
COLLECT_INTERVAL_S = 0.2
"""How often finished cues are taken from the recognizer (a fifth of the ~1 s budget)."""
STOP_TIMEOUT_S = 10.0
"""How long the end of a space waits for the recognizer to finish what it was given."""


@dataclass(slots=True)
class CaptionerStats:
    chunks_sent: int = 0
    chunks_dropped: int = 0
    """Chunks the full queue refused: the recognizer was `queue_seconds` behind."""
    seconds_dropped: float = 0.0
    cues: int = 0


class Captioner:
    def __init__(
        self,
        space_id: str,
        config: recognizer.RecognizerConfig,
        *,
        queue_seconds: float,
        max_cues: int,
    ) -> None:
        self.space_id = space_id
        self._config = config
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._audio = self._context.Queue(maxsize=max(1, int(queue_seconds * 1000 / CHUNK_MS)))
        self._cues = self._context.Queue()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._batch: list[bytes] = []
        self._batch_samples = 0
        self._batch_start = 0
        self._next_sample = 0
        self._chunk_samples = SAMPLE_RATE * CHUNK_MS // 1000
        self._collector: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()
        self._stopping = False
        self.track = CaptionTrack(max_cues)
        self.stats = CaptionerStats()

    @property
    def fed_s(self) -> float:
        """Program audio handed to the recognizer so far (or dropped), in seconds."""
        return self._next_sample / SAMPLE_RATE

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._process = self._context.Process(
            target=recognizer.run,
            args=(self._config, self._audio, self._cues),
            name=f"captions-{self.space_id}",
            daemon=True,
        )
        self._process.start()
        self._collector = asyncio.create_task(self._collect(), name=f"captions-{self.space_id}")

    def feed(self, frame: PcmFrame) -> None:
        """The program's next 20 ms; never blocks."""
        if self._stopping:
            return
        if not self._batch:
            self._batch_start = self._next_sample
        self._batch.append(frame.tobytes())
        self._batch_samples += len(frame)
        self._next_sample += len(frame)
        if self._batch_samples >= self._chunk_samples:
            self._send()

    def _send(self) -> None:
        chunk = (self._batch_start, b"".join(self._batch))
        seconds = self._batch_samples / SAMPLE_RATE
        self._batch, self._batch_samples = [], 0
        try:
            self._audio.put_nowait(chunk)
        except queue.Full:
            self.stats.chunks_dropped += 1
            self.stats.seconds_dropped += seconds
        else:
            self.stats.chunks_sent += 1

    async def _collect(self) -> None:
        while True:
            while True:
                try:
                    item = self._cues.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._finished.set()
                    return
                self.track.add(Cue(*item))
                self.stats.cues += 1
            if self._process is not None and not self._process.is_alive() and self._cues.empty():
                log.warning("the captions process of %s stopped", self.space_id)
                self._finished.set()
                return
            await asyncio.sleep(COLLECT_INTERVAL_S)

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """End of the program: what was queued is recognized (up to `timeout_s`), then
        the process ends."""
        if self._stopping:
            return
        self._stopping = True
        if self._batch:
            self._send()
        with contextlib.suppress(queue.Full):
            await asyncio.to_thread(self._audio.put, None, True, timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), timeout_s)
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, 2.0)
            if process.is_alive():
                log.warning("the captions process of %s did not end; killed", self.space_id)
                process.kill()
                await asyncio.to_thread(process.join, 2.0)
        self._audio.cancel_join_thread()
        self._audio.close()
        self._cues.close()
