"""One 20 ms clock for every stage of the node (stage/metronome.py). No network."""

from __future__ import annotations

import asyncio

from townhall.config import StageSettings
from townhall.media import FRAME_SAMPLES, PcmFrame
from townhall.stage.metronome import Metronome
from townhall.stage.room import StageRoom

PERIOD = 0.02


async def test_stages_tick_together_on_one_clock_that_stops_when_the_last_leaves() -> None:
    metronome = Metronome(PERIOD)
    counts = {"a": 0, "b": 0}
    beats = {
        name: metronome.beat(lambda name=name: counts.__setitem__(name, counts[name] + 1))
        for name in counts
    }
    beats["a"].start()
    beats["b"].start()
    beats["b"].start()  # idempotent: still one beat
    await asyncio.sleep(0.5)
    await beats["a"].stop()
    assert metronome.running  # b still ticks
    a_then = counts["a"]
    await asyncio.sleep(0.1)
    assert counts["a"] == a_then and counts["b"] > a_then
    await beats["b"].stop()
    await beats["b"].stop()  # idempotent
    assert not metronome.running
    assert 5 <= a_then <= 30  # 25 due; a loaded machine may skip some (never add any)
    assert beats["a"].stats.ticks == a_then and beats["b"].stats.ticks == counts["b"]


async def test_a_failing_stage_does_not_stop_the_others() -> None:
    metronome = Metronome(PERIOD)
    good = 0

    def fails() -> None:
        raise RuntimeError("boom")

    def counts() -> None:
        nonlocal good
        good += 1

    failing, working = metronome.beat(fails), metronome.beat(counts)
    failing.start()
    working.start()
    await asyncio.sleep(0.2)
    await failing.stop()
    await working.stop()
    assert good >= 5 and working.stats.errors == 0
    assert failing.stats.errors == failing.stats.ticks >= 5


async def test_stage_rooms_on_a_metronome_both_make_their_program() -> None:
    metronome = Metronome()
    programs: dict[str, list[PcmFrame]] = {"one": [], "two": []}
    rooms = [
        StageRoom(name, StageSettings(), frames.append, metronome=metronome)
        for name, frames in programs.items()
    ]
    for room in rooms:
        await room.start()
    await asyncio.sleep(0.4)
    for room in rooms:
        await room.stop()
    assert not metronome.running
    for frames in programs.values():
        assert len(frames) >= 5 and all(f.shape == (FRAME_SAMPLES,) for f in frames)
    assert all(room.stats().clock.ticks == len(programs[room.space_id]) for room in rooms)
