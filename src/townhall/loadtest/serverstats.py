"""The server's own view during the run (CPU, loop lag, listeners), when it shares one.

Why: a rehearsal that only sees the client side cannot tell "the server shed
load honestly" from "the server was drowning". townhall exposes ``GET
/api/stats``; other servers may have a health or Prometheus endpoint; any of
them may be missing, and then the report simply has no server curves.

The first path that answers 200 is kept for the run. JSON objects give their
numeric fields (one level of nesting, as "group.field"); Prometheus text gives
its unlabelled samples, and ``process_cpu_seconds_total`` becomes cpu_percent.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from townhall.loadtest.client import HttpClient, RequestError

POLL_INTERVAL_S = 1.0
POLL_TIMEOUT_S = 2.0
CAPACITY_FIELDS = (
    "max_admissions_per_s", "admission_capacity_per_s", "admission_rate_per_s",
    "admission_rate", "capacity_admissions_per_s",
)
"""Where the node's admission capacity may appear, for goodput as a share of it."""
PROM_CPU = "process_cpu_seconds_total"


def numeric_fields(data: Any) -> dict[str, float]:
    """Top-level and one-level-nested numbers of a JSON object. Pure."""
    out: dict[str, float] = {}
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[str(key)] = float(value)
        elif isinstance(value, dict):
            for inner, number in value.items():
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    continue
                if math.isfinite(number):
                    out[f"{key}.{inner}"] = float(number)
    return out


def prometheus_fields(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text exposition. Pure."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        parts = line.split()
        if len(parts) >= 2:
            try:
                value = float(parts[1])
            except ValueError:
                continue
            if math.isfinite(value):
                out[parts[0]] = value
    return out


class ServerStats:
    """Polls the server's stats once a second; ``latest`` is what the timeline shows."""

    def __init__(self, client: HttpClient, paths: tuple[str, ...]):
        self._client = client
        self._paths = paths
        self.path: str | None = None
        self.latest: dict[str, float] = {}
        self.polls = 0
        self.failures = 0
        self._last_cpu: tuple[float, float] | None = None

    @property
    def capacity(self) -> float | None:
        for name in CAPACITY_FIELDS:
            value = self.latest.get(name)
            if value:
                return value
        return None

    async def discover(self) -> str | None:
        """The first stats path that answers 200 with numbers; None when the server has none."""
        for path in self._paths:
            try:
                response = await self._client.request("GET", path, timeout=POLL_TIMEOUT_S)
            except RequestError:
                continue
            if response.status == 200:
                self._absorb(response.body)
                if self.latest:
                    self.path = path
                    return path
        self.polls = 0
        return None

    async def run(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        if self.path is None:
            return
        while loop.time() < deadline:
            await asyncio.sleep(POLL_INTERVAL_S)
            try:
                response = await self._client.request("GET", self.path, timeout=POLL_TIMEOUT_S)
            except RequestError:
                self.failures += 1
                continue
            if response.status == 200:
                self._absorb(response.body)
            else:
                self.failures += 1

    def _absorb(self, body: bytes) -> None:
        self.polls += 1
        try:
            fields = numeric_fields(json.loads(body))
        except ValueError:
            fields = prometheus_fields(body.decode("utf-8", "replace"))
        cpu = fields.get(PROM_CPU)
        if cpu is not None and "cpu_percent" not in fields:
            now = asyncio.get_running_loop().time()
            if self._last_cpu is not None and now > self._last_cpu[0]:
                fields["cpu_percent"] = 100 * (cpu - self._last_cpu[1]) / (now - self._last_cpu[0])
            self._last_cpu = (now, cpu)
        self.latest = fields
