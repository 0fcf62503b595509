"""The process's CPU use between two heartbeats, in cores: what placement compares.

Measured, not guessed: `time.process_time` (user + system of every thread of this
process) over the wall time since the last reading. The stream workers' CPU is not in
it; they serve listeners, which placement counts apart (NodeInfo.load).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ProcessCpu:
    def __init__(
        self,
        cpu_clock: Callable[[], float] = time.process_time,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cpu_clock = cpu_clock
        self._wall_clock = wall_clock
        self._cpu = cpu_clock()
        self._wall = wall_clock()

    def cores(self) -> float:
        """Cores used since the previous call (or since construction); 0.0 when no time
        passed."""
        cpu, wall = self._cpu_clock(), self._wall_clock()
        used, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        return max(0.0, used / elapsed) if elapsed > 0 else 0.0
