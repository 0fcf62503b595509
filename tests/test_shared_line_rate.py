"""A line shared by two nodes admits at the sum of their rates, never faster (found by
the cluster rehearsal, bench.cluster_rehearsal: two edges of 20 admissions/s each let in
up to 467/s for ten seconds once their lines were a few periods old).

Why it ran away: a room learns how many of the numbers it granted come to claim their
place (dead numbers then cost less). On a shared line each node saw the whole line's
grants but only the claims of the polls that reached it (nginx spreads them), so it
believed half the numbers were dead, granted twice as fast, saw a smaller share claimed,
and so on up to the speed-up cap. Pure: two doors' rooms on one memory State, a
simulated clock, every waiting person polling either node in turn, as through nginx.
"""

from __future__ import annotations

import pytest

from townhall.admission.signing import Signer
from townhall.admission.waiting_room import Admitted
from townhall.config import load_settings
from townhall.service.door import LINE_TICK_S, Door
from townhall.service.shared_line import SharedLine
from townhall.state.memory import MemoryState

RATE = 20.0
CROWD = 4_000
SECONDS = 60
POLL_EVERY_S = 1.0
SPACE = "space"


@pytest.mark.parametrize("nodes", [1, 2])
async def test_a_shared_line_admits_at_the_summed_rate(tmp_path, nodes: int) -> None:
    clock = [1_000.0]
    state = MemoryState(clock=lambda: clock[0])
    settings = load_settings(
        {"TOWNHALL_ADMISSION_MAX_ADMISSIONS_PER_S": str(RATE)}, data_dir=tmp_path
    )
    signer = Signer(b"k" * 32)
    lines = [SharedLine(state) for _ in range(nodes)]
    doors = [Door(settings, signer, lambda: 0, state=state, line=line) for line in lines]
    rooms = [door._room(SPACE, clock[0]) for door in doors]
    tokens = {}
    for seq in range(CROWD):  # the crowd is in line at t=0, numbered by the shared line
        token, _ = rooms[seq % nodes].wait_as(clock[0], await lines[0].number(SPACE))
        tokens[token.seq] = token.token
    admitted_at: list[float] = []
    steps_per_poll = round(POLL_EVERY_S / LINE_TICK_S)
    for step in range(round(SECONDS / LINE_TICK_S)):
        clock[0] += LINE_TICK_S
        for room, line in zip(rooms, lines, strict=True):
            room.tick(clock[0])
            await line.sync(SPACE, room)
        for seq in [s for s in tokens if s % steps_per_poll == step % steps_per_poll]:
            room = rooms[(seq + step) % nodes]  # each poll may reach either node
            if isinstance(room.poll(tokens[seq], clock[0]), Admitted):
                admitted_at.append(clock[0] - 1_000.0)
                del tokens[seq]
    late = [t for t in admitted_at if t > 10.0]  # past the first periods and the burst
    rate = len(late) / (SECONDS - 10.0)
    print(f"\n{nodes} node(s): {len(admitted_at)} admitted, {rate:.1f}/s after 10 s")
    assert rate <= nodes * RATE * 1.1, f"{rate:.0f}/s admitted on a line of {nodes * RATE:g}/s"
    assert rate >= nodes * RATE * 0.9


async def test_a_shared_line_tells_the_wait_at_the_lines_pace() -> None:
    """The ETA of a place in a shared line counts every node's admissions, not only this
    node's rate: the rehearsal told people 56 s on average, and they got in after 34."""
    clock = [1_000.0]
    state = MemoryState(clock=lambda: clock[0])
    settings = load_settings({"TOWNHALL_ADMISSION_MAX_ADMISSIONS_PER_S": str(RATE)})
    signer = Signer(b"k" * 32)
    lines = [SharedLine(state, clock=lambda: clock[0]) for _ in range(2)]
    doors = [Door(settings, signer, lambda: 0, state=state, line=line) for line in lines]
    rooms = [door._room(SPACE, clock[0]) for door in doors]
    waiting: dict[int, tuple[str, float, float]] = {}  # seq: token, arrived, ETA told
    errors: list[float] = []
    per_step = round(2.5 * 2 * RATE * LINE_TICK_S)  # 2.5x the line's 40/s
    for step in range(round(40 / LINE_TICK_S)):
        clock[0] += LINE_TICK_S
        for room, line in zip(rooms, lines, strict=True):
            room.tick(clock[0])
            await line.sync(SPACE, room)
        for seq in [s for s in waiting if s % 5 == step % 5]:
            token_text, arrived, told = waiting[seq]
            if isinstance(rooms[(seq + step) % 2].poll(token_text, clock[0]), Admitted):
                del waiting[seq]
                if arrived > 1_010.0:  # the line's pace is known after a few seconds
                    errors.append((clock[0] - arrived - told) / (clock[0] - arrived))
        for _ in range(per_step):
            seq = await lines[0].number(SPACE)
            token, status = rooms[seq % 2].wait_as(clock[0], seq)
            if not isinstance(status, Admitted):  # else in at once: nothing was told
                waiting[seq] = (token.token, clock[0], status.eta_s)
    mean_error = sum(errors) / len(errors)
    print(f"\n{len(errors)} waits measured; mean (actual - told) / actual {mean_error:+.2f}")
    assert len(errors) > 100
    assert abs(mean_error) < 0.25, f"told {1 - mean_error:.1f}x the real wait"
