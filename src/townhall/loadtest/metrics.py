"""What the run saw: counters, gauges, latency histograms and a one-row-per-second timeline.

Why one recorder object with plain methods: tens of thousands of listener
coroutines report into it, so each event is a dict increment or a histogram
bucket, never an allocation that grows with the run. The per-second rows are
the only thing that grows, one small dict per second of run, and the run is
bounded in time. Samples of (told, actual) waits are a fixed-size reservoir.
Pure, no I/O: the caller passes the clock readings in.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from townhall.loadtest.histogram import LogHistogram

TOLD_VS_ACTUAL_SAMPLES = 2_000
"""(told, actual) pairs kept for the scatter plot; a uniform reservoir over all waiters."""
OVERDUE_FACTOR = 1.5
OVERDUE_SLACK_S = 5.0
"""A listener still waiting at the end is "overdue" past 1.5x its ETA plus 5 s."""
OUTCOMES = (
    "completed", "failed", "abandoned", "unfinished:joining", "unfinished:waiting",
    "unfinished:streaming", "skipped:client_full",
)
"""Each arrival ends in exactly one of these; their sum equals the arrivals."""


SUMMED = (
    "arrivals", "admitted", "heard_audio", "waited", "stream_drops", "reconnects",
    "unrecognised_audio", "stream_bytes", "stream_seconds", "told_total", "actual_total",
    "signed_error_total", "still_waiting", "still_waiting_told_total",
    "still_waiting_waited_total", "still_waiting_overdue",
)
"""Recorder fields that add up across generator processes."""
HISTOGRAMS = (
    "ttfa", "stream_ttfb", "queue_wait", "snapshot_latency", "join_latency", "wait_error",
    "resumed_s",
)


class Recorder:
    """Collects everything the report shows; ``tick`` closes one second of timeline."""

    def __init__(self, seed: int = 0) -> None:
        self.arrivals = 0
        self.admitted = 0
        self.heard_audio = 0
        self.waited = 0
        self.stream_drops = 0
        self.reconnects = 0
        self.unrecognised_audio = 0
        self.stream_bytes = 0
        self.stream_seconds = 0.0
        """Live-stream bytes read and seconds listened: their ratio is the bitrate people got."""
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.joining = 0
        self.waiting = 0
        self.streaming = 0
        self.ttfa = LogHistogram()
        """Snapshot request to first audio byte, minus the listener's own think time."""
        self.stream_ttfb = LogHistogram()
        """Stream request sent to first audio byte: the fan-out's own start latency."""
        self.queue_wait = LogHistogram()
        self.snapshot_latency = LogHistogram()
        self.join_latency = LogHistogram()
        self.wait_error = LogHistogram()
        """|actual - told| for listeners who were put in the waiting room."""
        self.resumed_s = LogHistogram()
        """A dropped stream to audio again (re-join with the ticket, then the new stream)."""
        self.told_total = 0.0
        self.actual_total = 0.0
        self.signed_error_total = 0.0
        self.told_vs_actual: list[tuple[float, float]] = []
        self.still_waiting = 0
        self.still_waiting_told_total = 0.0
        self.still_waiting_waited_total = 0.0
        self.still_waiting_overdue = 0
        self._rng = random.Random(seed)
        self.attacks: dict[str, Counter[str]] = {}
        self.attack_latency: dict[str, LogHistogram] = {}
        self.timeline: list[dict[str, Any]] = []
        self.sample_ticket: str | None = None
        """One real ticket, kept so the forged-ticket attack can tamper with it."""
        self.sample_live_url: str | None = None
        self._second: Counter[str] = Counter()
        self._second_errors: Counter[str] = Counter()
        self._second_ttfa = LogHistogram()

    # -- listener events ---------------------------------------------------
    def arrival(self) -> None:
        self.arrivals += 1
        self._second["arrivals"] += 1

    def error(self, kind: str) -> None:
        self.errors[kind] += 1
        self._second_errors[kind] += 1

    def outcome(self, kind: str) -> None:
        self.outcomes[kind] += 1

    def admitted_now(self, ticket: str, live_url: str | None) -> None:
        self.admitted += 1
        self._second["admitted"] += 1
        if self.sample_ticket is None:
            self.sample_ticket = ticket
            self.sample_live_url = live_url

    def waited_then_admitted(self, told_s: float, actual_s: float) -> None:
        """A listener told ``told_s`` by its first waiting-room answer got in after ``actual_s``."""
        self.waited += 1
        self.queue_wait.record(actual_s)
        self.wait_error.record(abs(actual_s - told_s))
        self.told_total += told_s
        self.actual_total += actual_s
        self.signed_error_total += actual_s - told_s
        pair = (round(told_s, 3), round(actual_s, 3))
        if len(self.told_vs_actual) < TOLD_VS_ACTUAL_SAMPLES:
            self.told_vs_actual.append(pair)
        else:
            slot = self._rng.randrange(self.waited)
            if slot < TOLD_VS_ACTUAL_SAMPLES:
                self.told_vs_actual[slot] = pair

    def still_waiting_at_end(self, told_s: float, waited_s: float) -> None:
        """A listener the run ended on while it waited: told ``told_s``, waited ``waited_s``
        so far (a lower bound of its real wait)."""
        self.still_waiting += 1
        self.still_waiting_told_total += told_s
        self.still_waiting_waited_total += waited_s
        if waited_s > told_s * OVERDUE_FACTOR + OVERDUE_SLACK_S:
            self.still_waiting_overdue += 1

    def first_audio(self, ttfa_s: float, stream_ttfb_s: float) -> None:
        self.heard_audio += 1
        self._second["first_audio"] += 1
        self.ttfa.record(ttfa_s)
        self._second_ttfa.record(ttfa_s)
        self.stream_ttfb.record(stream_ttfb_s)

    def resumed(self, seconds: float) -> None:
        """A listener whose stream dropped hears audio again ``seconds`` later."""
        self.resumed_s.record(max(seconds, 0.0))

    def streamed(self, nbytes: int, seconds: float) -> None:
        self.stream_bytes += nbytes
        self.stream_seconds += max(seconds, 0.0)

    def left(self) -> None:
        self._second["left"] += 1

    # -- attack events -----------------------------------------------------
    def attack(self, name: str, result: str, latency_s: float | None = None) -> None:
        self.attacks.setdefault(name, Counter())[result] += 1
        self._second[f"attack:{name}"] += 1
        if latency_s is not None:
            self.attack_latency.setdefault(name, LogHistogram()).record(latency_s)

    # -- across generator processes ------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The totals and histograms, JSON-ready, for a run split over several generator
        processes (townhall.loadtest.merge adds them up with ``merge``)."""
        return {
            "counters": {name: getattr(self, name) for name in SUMMED},
            "outcomes": dict(self.outcomes),
            "errors": dict(self.errors),
            "histograms": {name: getattr(self, name).to_state() for name in HISTOGRAMS},
            "attacks": {name: dict(results) for name, results in self.attacks.items()},
            "attack_latency": {n: h.to_state() for n, h in self.attack_latency.items()},
            "told_vs_actual": self.told_vs_actual,
        }

    def merge_state(self, state: dict[str, Any]) -> None:
        """Add another generator's ``to_state`` to this one's totals (its timeline aside)."""
        for name, value in state["counters"].items():
            if name in SUMMED:
                setattr(self, name, getattr(self, name) + value)
        self.outcomes.update(state["outcomes"])
        self.errors.update(state["errors"])
        for name, histogram in state["histograms"].items():
            if name in HISTOGRAMS:
                getattr(self, name).merge(LogHistogram.from_state(histogram))
        for name, results in state["attacks"].items():
            self.attacks.setdefault(name, Counter()).update(results)
        for name, histogram in state["attack_latency"].items():
            self.attack_latency.setdefault(name, LogHistogram()).merge(
                LogHistogram.from_state(histogram)
            )
        room = TOLD_VS_ACTUAL_SAMPLES - len(self.told_vs_actual)
        self.told_vs_actual.extend(tuple(pair) for pair in state["told_vs_actual"][:room])

    # -- timeline ----------------------------------------------------------
    def tick(self, t: float, extra: dict[str, Any]) -> dict[str, Any]:
        """Close the second ending at run time ``t``; ``extra`` adds server and client gauges."""
        second = self._second
        ttfa = self._second_ttfa
        row: dict[str, Any] = {
            "t": round(t, 3),
            "arrivals": second["arrivals"],
            "admitted": second["admitted"],
            "first_audio": second["first_audio"],
            "left": second["left"],
            "joining": self.joining,
            "waiting": self.waiting,
            "streaming": self.streaming,
            "ttfa_p50": ttfa.percentile(0.5),
            "ttfa_p90": ttfa.percentile(0.9),
            "ttfa_p99": ttfa.percentile(0.99),
            "errors": dict(self._second_errors),
            "attacks": {k[7:]: v for k, v in second.items() if k.startswith("attack:")},
        }
        row.update(extra)
        self.timeline.append(row)
        self._second = Counter()
        self._second_errors = Counter()
        self._second_ttfa = LogHistogram()
        return row
