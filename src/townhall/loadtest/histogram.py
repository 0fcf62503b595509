"""A latency histogram with bounded memory, for percentiles over millions of samples.

Why not keep every sample: a rehearsal of the August 2024 crowd records a
time-to-first-audio per listener, per second of the run; logarithmic buckets
keep the relative error of any percentile under ``growth - 1`` (2 %) in a few
hundred integers whatever the sample count. Pure, no I/O.
"""

from __future__ import annotations

import math
from typing import Any

DEFAULT_MIN_VALUE = 1e-4
"""Smallest distinguished value (0.1 ms): anything faster lands in the first bucket."""
DEFAULT_GROWTH = 1.02
"""Ratio between consecutive bucket edges: the worst relative error of a percentile."""


class LogHistogram:
    """Counts of non-negative values in geometric buckets; exact count, sum, min and max."""

    __slots__ = ("_buckets", "_growth", "_log_growth", "_min_value", "count", "max", "min", "total")

    def __init__(self, min_value: float = DEFAULT_MIN_VALUE, growth: float = DEFAULT_GROWTH):
        if min_value <= 0 or growth <= 1:
            raise ValueError("min_value must be positive and growth above 1")
        self._min_value = min_value
        self._growth = growth
        self._log_growth = math.log(growth)
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def _index(self, value: float) -> int:
        if value <= self._min_value:
            return 0
        return 1 + int(math.log(value / self._min_value) / self._log_growth)

    def record(self, value: float) -> None:
        value = max(value, 0.0)
        index = self._index(value)
        self._buckets[index] = self._buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def merge(self, other: LogHistogram) -> None:
        if (other._min_value, other._growth) != (self._min_value, self._growth):
            raise ValueError("can only merge histograms with the same buckets")
        for index, n in other._buckets.items():
            self._buckets[index] = self._buckets.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def percentile(self, q: float) -> float | None:
        """The value under which a share ``q`` (0..1) of the samples fall; None when empty."""
        if not self.count:
            return None
        if not 0 <= q <= 1:
            raise ValueError("q is a share between 0 and 1")
        rank = max(1, math.ceil(q * self.count))
        if rank >= self.count:
            return self.max
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return min(max(self._representative(index), self.min), self.max)
        return self.max

    def _representative(self, index: int) -> float:
        if index == 0:
            return self._min_value
        # Geometric middle of [min*g^(i-1), min*g^i).
        return self._min_value * self._growth ** (index - 0.5)

    def summary(self, quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)) -> dict[str, float | None]:
        """{"n", "mean", "p50", "p90", "p99", "max"} for the report."""
        out: dict[str, float | None] = {"n": self.count, "mean": self.mean}
        for q in quantiles:
            out[f"p{round(q * 100):d}"] = self.percentile(q)
        out["max"] = self.max if self.count else None
        return out

    def to_state(self) -> dict[str, object]:
        """Everything needed to rebuild it in another process (``from_state``) and merge."""
        return {
            "min_value": self._min_value, "growth": self._growth,
            "buckets": {str(i): n for i, n in self._buckets.items()},
            "count": self.count, "total": self.total,
            "min": self.min if self.count else None, "max": self.max if self.count else None,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LogHistogram:
        histogram = cls(float(state["min_value"]), float(state["growth"]))
        histogram._buckets = {int(i): int(n) for i, n in state["buckets"].items()}
        histogram.count = int(state["count"])
        histogram.total = float(state["total"])
        if histogram.count:
            histogram.min, histogram.max = float(state["min"]), float(state["max"])
        return histogram
