"""The per-speaker inbound queue and the reframer: pure logic, no network."""

from __future__ import annotations

import numpy as np
import pytest

from townhall.media import FRAME_SAMPLES
from townhall.stage.jitter import JitterQueue, Reframer


def frame(n: int) -> np.ndarray:
    return np.full(FRAME_SAMPLES, n, dtype=np.int16)


def ids(frames) -> list[int | None]:
    return [None if f is None else int(f[0]) for f in frames]


def test_prebuffers_then_plays_in_order() -> None:
    q = JitterQueue(prebuffer=2, capacity=10)
    assert q.pop() is None
    q.push(frame(1))
    assert q.pop() is None  # one frame is not enough to start
    q.push(frame(2))
    assert ids([q.pop(), q.pop()]) == [1, 2]
    assert q.stats.played == 2 and q.stats.underruns == 0


def test_running_dry_counts_an_underrun_and_buffers_deeper() -> None:
    q = JitterQueue(prebuffer=2, capacity=10)
    for n in (1, 2):
        q.push(frame(n))
    assert ids([q.pop(), q.pop(), q.pop()]) == [1, 2, None]
    assert q.stats.underruns == 1 and not q.playing
    assert q.stats.prebuffer == 3  # it ran dry: hold one frame more from now on
    q.push(frame(3))
    q.push(frame(4))
    assert q.pop() is None  # re-buffering to the new depth
    q.push(frame(5))
    assert ids([q.pop(), q.pop(), q.pop()]) == [3, 4, 5]


def test_prebuffer_adapts_up_to_jitter_and_back_down_when_calm() -> None:
    q = JitterQueue(prebuffer=2, capacity=10, trim_window=5, max_prebuffer=4)
    for _ in range(5):  # starve it repeatedly: the depth climbs, but only to the maximum
        q.pop()
        q.push(frame(0))
        while q.pop() is None:
            q.push(frame(0))
        while q.pop() is not None:
            pass
    assert q.stats.prebuffer == 4
    for _ in range(4):
        q.push(frame(0))
    for _ in range(30):  # then a steady second and more: one frame back per calm window
        q.push(frame(0))
        q.pop()
    assert q.stats.prebuffer == 2


def test_overflow_drops_the_oldest_and_counts() -> None:
    q = JitterQueue(prebuffer=2, capacity=4)
    for n in range(1, 8):
        q.push(frame(n))
    assert len(q) == 4
    assert q.stats.dropped_overflow == 3
    assert ids([q.pop() for _ in range(4)]) == [4, 5, 6, 7]


def test_latency_left_by_a_burst_is_trimmed_back_to_the_prebuffer() -> None:
    q = JitterQueue(prebuffer=2, capacity=10, trim_window=5)
    for n in range(8):  # a burst: 8 frames at once
        q.push(frame(n))
    n = 8
    depths = []
    for _ in range(12):  # then steady: one in, one out per tick
        q.push(frame(n))
        n += 1
        depths.append(len(q))
        q.pop()
    assert depths[0] == 9
    assert q.stats.trimmed == 7  # once, at the end of the first window
    assert depths[-1] == 2  # back to the prebuffer depth (counting this tick's frame)
    assert q.stats.dropped_overflow == 0


def test_steady_flow_is_never_trimmed() -> None:
    q = JitterQueue(prebuffer=2, capacity=10, trim_window=5)
    q.push(frame(0))
    for n in range(1, 200):
        q.push(frame(n))
        q.pop()
    assert q.stats.trimmed == 0 and q.stats.underruns == 0


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        JitterQueue(prebuffer=5, capacity=4)


def test_reframer_cuts_any_length_into_20ms_frames() -> None:
    r = Reframer()
    samples = np.arange(3000, dtype=np.int16)  # 62.5 ms
    frames = r.feed(samples[:500]) + r.feed(samples[500:2900]) + r.feed(samples[2900:])
    assert [f.size for f in frames] == [FRAME_SAMPLES] * 3
    assert np.array_equal(np.concatenate(frames), samples[: 3 * FRAME_SAMPLES])
    assert r.feed(np.arange(900, dtype=np.int16))[0][0] == 2880  # the remainder comes first
