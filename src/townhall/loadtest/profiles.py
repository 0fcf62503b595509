"""Arrival profiles: how many listeners arrive per second, as pure functions of time.

Why an *open* model: a flash crowd does not wait for the server. People arrive
at the rate the world sends them whether or not earlier arrivals got in, so the
generator schedules arrivals from the profile alone; a closed loop ("N users
that retry when done") would slow down exactly when the server does and hide
the collapse we rehearse for.

Every profile is a piecewise-linear rate curve (arrivals per second over
seconds), so the expected number of arrivals up to ``t`` and its inverse have
closed forms; the arrival times follow from the inverse (evenly spaced, or a
Poisson process by time rescaling). Past its last point a curve keeps its last
rate. No I/O here.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

PROFILE_NAMES = ("constant", "ramp", "spike", "aug2024")

DEFAULT_RAMP_S = 60.0
"""Ramp profile: seconds from the base rate to the peak rate."""
DEFAULT_SPIKE_AT_S = 5.0
"""Spike profile: seconds of base rate before the spike (the host goes live)."""
DEFAULT_SPIKE_S = 30.0
"""Spike profile: how long the peak rate lasts."""
DEFAULT_BASE_FRACTION = 0.1
"""Ramp and spike profiles: base rate as a share of the peak when not given."""
STEP_S = 1e-6
"""Width of the near-vertical edge used to draw a step in a piecewise-linear curve."""

# The August 2024 event, as reported: about 100k present when the space
# opened, 700k half an hour later, 1.3M at the peak. We read "present" as
# cumulative arrivals (almost nobody leaves while the crowd is still growing)
# and turn it into rates. The opening minute and the time of the peak are our
# assumptions, named here so they are easy to revisit.
AUG2024_AT_START = 100_000
AUG2024_AT_HALF_HOUR = 700_000
AUG2024_AT_PEAK = 1_300_000
AUG2024_OPENING_S = 60.0
"""The people already waiting for the start all arrive within the first minute."""
AUG2024_HALF_HOUR_S = 1_800.0
AUG2024_PEAK_S = 4_500.0
"""Peak 75 minutes after the start; after it, departures (hold times) shape the curve."""


@dataclass(frozen=True)
class Profile:
    """A piecewise-linear arrival-rate curve: ``points`` are (seconds, arrivals/s)."""

    name: str
    points: tuple[tuple[float, float], ...]
    length_s: float
    """The natural length of the profile: the default run duration."""

    def __post_init__(self) -> None:
        if not self.points or self.points[0][0] != 0.0:
            raise ValueError("a profile starts at t=0")
        times = [t for t, _ in self.points]
        if any(b < a for a, b in itertools.pairwise(times)):
            raise ValueError("profile points must be in time order")
        if any(r < 0 or not math.isfinite(r) for _, r in self.points):
            raise ValueError("arrival rates must be finite and non-negative")
        cumulative = [0.0]
        for (t0, r0), (t1, r1) in itertools.pairwise(self.points):
            cumulative.append(cumulative[-1] + (r0 + r1) * (t1 - t0) / 2)
        object.__setattr__(self, "_times", times)
        object.__setattr__(self, "_cumulative", cumulative)

    def rate(self, t: float) -> float:
        """Arrivals per second at ``t`` (0 before the start)."""
        if t < 0:
            return 0.0
        times: list[float] = self._times  # type: ignore[attr-defined]
        i = bisect.bisect_right(times, t) - 1
        if i >= len(times) - 1:
            return self.points[-1][1]
        (t0, r0), (t1, r1) = self.points[i], self.points[i + 1]
        if t1 == t0:
            return r1
        return r0 + (r1 - r0) * (t - t0) / (t1 - t0)

    def expected_arrivals(self, t: float) -> float:
        """The integral of the rate over [0, t]."""
        if t <= 0:
            return 0.0
        times: list[float] = self._times  # type: ignore[attr-defined]
        cumulative: list[float] = self._cumulative  # type: ignore[attr-defined]
        i = bisect.bisect_right(times, t) - 1
        t0 = times[i]
        return cumulative[i] + (self.points[i][1] + self.rate(t)) * (t - t0) / 2

    def time_of_arrival(self, n: float) -> float | None:
        """When the expected arrivals reach ``n``; None if they never do."""
        if n <= 0:
            return 0.0
        cumulative: list[float] = self._cumulative  # type: ignore[attr-defined]
        i = bisect.bisect_left(cumulative, n) - 1
        if i >= len(self.points) - 1:
            t0, r0 = self.points[-1]
            rest = n - cumulative[-1]
            return t0 + rest / r0 if r0 > 0 else None
        (t0, r0), (t1, r1) = self.points[i], self.points[i + 1]
        rest = n - cumulative[i]
        if t1 == t0:
            return t0
        slope = (r1 - r0) / (t1 - t0)
        # Solve r0*x + slope*x^2/2 = rest in the form that stays exact when slope -> 0.
        root = math.sqrt(max(r0 * r0 + 2 * slope * rest, 0.0))
        denominator = r0 + root
        x = 2 * rest / denominator if denominator > 0 else 0.0
        return min(t0 + x, t1)

    def scaled(self, scale: float = 1.0, time_scale: float = 1.0) -> Profile:
        """The same shape with ``scale`` times the people, played ``time_scale`` times faster.

        Compressing time keeps the number of arrivals (so rates go up by
        ``time_scale``): a rehearsal of an hour in a minute sees the same crowd.
        """
        if scale <= 0 or time_scale <= 0:
            raise ValueError("scale and time_scale must be positive")
        points = tuple((t / time_scale, r * scale * time_scale) for t, r in self.points)
        return Profile(self.name, points, self.length_s / time_scale)


def constant(rate: float, length_s: float = 60.0) -> Profile:
    return Profile("constant", ((0.0, rate),), length_s)


def ramp(rate: float, base_rate: float | None = None, ramp_s: float = DEFAULT_RAMP_S) -> Profile:
    """From ``base_rate`` up to ``rate`` over ``ramp_s``, then steady."""
    base = rate * DEFAULT_BASE_FRACTION if base_rate is None else base_rate
    return Profile("ramp", ((0.0, base), (ramp_s, rate)), ramp_s)


def spike(
    rate: float,
    base_rate: float | None = None,
    at_s: float = DEFAULT_SPIKE_AT_S,
    spike_s: float = DEFAULT_SPIKE_S,
) -> Profile:
    """Base rate, then ``rate`` for ``spike_s`` from ``at_s`` (the host goes live), then base."""
    base = rate * DEFAULT_BASE_FRACTION if base_rate is None else base_rate
    end = at_s + spike_s
    points = ((0.0, base), (at_s, base), (at_s + STEP_S, rate), (end, rate), (end + STEP_S, base))
    if at_s <= 0:
        points = ((0.0, rate), (end, rate), (end + STEP_S, base))
    return Profile("spike", points, end + at_s)


def aug2024() -> Profile:
    """Unscaled August 2024 shape in real seconds; use :meth:`Profile.scaled` to fit a machine."""
    opening = AUG2024_AT_START / AUG2024_OPENING_S
    growth = (AUG2024_AT_HALF_HOUR - AUG2024_AT_START) / (AUG2024_HALF_HOUR_S - AUG2024_OPENING_S)
    late = (AUG2024_AT_PEAK - AUG2024_AT_HALF_HOUR) / (AUG2024_PEAK_S - AUG2024_HALF_HOUR_S)
    points = (
        (0.0, opening),
        (AUG2024_OPENING_S, opening),
        (AUG2024_OPENING_S + STEP_S, growth),
        (AUG2024_HALF_HOUR_S, growth),
        (AUG2024_HALF_HOUR_S + STEP_S, late),
        (AUG2024_PEAK_S, late),
        (AUG2024_PEAK_S + STEP_S, 0.0),
    )
    return Profile("aug2024", points, AUG2024_PEAK_S)


def build_profile(
    name: str,
    *,
    rate: float,
    base_rate: float | None = None,
    ramp_s: float = DEFAULT_RAMP_S,
    spike_at_s: float = DEFAULT_SPIKE_AT_S,
    spike_s: float = DEFAULT_SPIKE_S,
    scale: float = 1.0,
    time_scale: float = 1.0,
) -> Profile:
    """The profile the command line names, scaled and time-compressed."""
    if name == "constant":
        shape = constant(rate)
    elif name == "ramp":
        shape = ramp(rate, base_rate, ramp_s)
    elif name == "spike":
        shape = spike(rate, base_rate, spike_at_s, spike_s)
    elif name == "aug2024":
        shape = aug2024()
    else:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
    return shape.scaled(scale, time_scale)


def arrival_times(
    profile: Profile,
    *,
    until_s: float,
    max_count: int,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Arrival instants in [0, until_s), at most ``max_count`` of them.

    With ``rng`` the arrivals form a non-homogeneous Poisson process (time
    rescaling: unit-rate exponential gaps mapped through the inverse of the
    expected-arrivals curve); without it they are evenly spaced in expectation
    (arrival k at the instant k expected arrivals have happened), which makes
    small runs reproducible.
    """
    n = 0.0
    for _ in range(max_count):
        n += rng.expovariate(1.0) if rng is not None else 1.0
        t = profile.time_of_arrival(n)
        if t is None or t >= until_s:
            return
        yield t
