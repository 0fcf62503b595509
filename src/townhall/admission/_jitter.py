"""Deterministic spread for retry intervals.

Clients told to come back "in 10 s" all at once come back all at once: the
herd just moves. Spreading each answer by a factor derived from the client's
own token (and the second it asked in) breaks the herd without a random
source, so a test that replays the same arrivals sees the same answers.
"""

from __future__ import annotations

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_UNIT = float(1 << 53)


def _mix64(x: int) -> int:
    """splitmix64's finaliser: every input bit moves about half the output bits."""
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def unit_hash(*parts: int) -> float:
    """A float in [0, 1) that depends only on `parts`; cheap (no hashlib)."""
    x = 0
    for part in parts:
        x = _mix64(x ^ (part & _MASK64))
    return (x >> 11) / _UNIT


def spread(value: float, fraction: float, *parts: int) -> float:
    """`value` scaled by a factor in [1 - fraction, 1 + fraction) chosen by `parts`."""
    return value * (1.0 + fraction * (2.0 * unit_hash(*parts) - 1.0))
