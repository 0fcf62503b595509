"""Solving the server's proof-of-work challenge the way a listener's browser would.

Why a process pool: at the default difficulty a solution costs ~60 ms of
CPython CPU; solved on the event loop it would stall every other simulated
listener for that long and corrupt the latencies we measure. The solver is
the server's own (``townhall.admission.proof_of_work.solve``), so the bytes
hashed are exactly the ones the server checks.

Challenge answers look like ``{"error": {"code": "pow_required", "challenge":
token, "difficulty": bits}}`` (the fields may also sit at the top level); the
join is retried with ``{"pow": {"challenge": token, "solution": answer}}``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

MAX_SOLVE_BITS = 28
"""Harder challenges (minutes of CPU each) are refused rather than solved."""
DIFFICULTY_FIELDS = ("difficulty", "difficulty_bits", "bits")


def challenge_of(answer: dict[str, Any]) -> tuple[str, int]:
    """(challenge token, difficulty bits) from a pow_required answer; ValueError if absent."""
    error = answer.get("error")
    places = [error, answer] if isinstance(error, dict) else [answer]
    for place in places:
        token = place.get("challenge")
        if isinstance(token, dict):  # {"challenge": {"token": ..., "difficulty": ...}}
            place, token = token, token.get("token")
        if not isinstance(token, str):
            continue
        for name in DIFFICULTY_FIELDS:
            bits = place.get(name)
            if isinstance(bits, int) and not isinstance(bits, bool):
                return token, bits
    raise ValueError("pow_required answer without a challenge and difficulty")


def _ready() -> None:
    """Run once in each worker: imports the solver, so the first challenge finds it loaded."""
    import townhall.admission.proof_of_work  # noqa: F401


def _solve(token: str, bits: int) -> str:
    from townhall.admission.proof_of_work import solve

    return solve(token, bits)


class PowSolver:
    """Solves challenges in worker processes; started before the run's clock, closed with it."""

    def __init__(self, workers: int = 1):
        self._workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self.solved = 0

    async def start(self) -> None:
        """Spawns the workers and waits until each has loaded the solver. Started on first
        use instead, the first challenged listeners' time to first audio would include an
        interpreter start (seconds on a busy machine), and a short run could end before a
        single challenge was solved."""
        loop = asyncio.get_running_loop()
        pool = self._started()
        await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(self._workers)))

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the parent holds an event loop and thousands of sockets.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self._workers, mp_context=context)
        return self._pool

    async def solve(self, answer: dict[str, Any]) -> dict[str, str]:
        token, bits = challenge_of(answer)
        if not 0 <= bits <= MAX_SOLVE_BITS:
            raise ValueError(f"difficulty {bits} bits is beyond what we solve")
        loop = asyncio.get_running_loop()
        solution = await loop.run_in_executor(self._started(), _solve, token, bits)
        self.solved += 1
        return {"challenge": token, "solution": solution}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
