"""Runs listener client processes (bench.client) and talks to them line by line."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from bench.client import Target

ROOT: Final = Path(__file__).resolve().parent.parent
REPLY_LIMIT: Final = 64 * 1024 * 1024
"""A reply carries every listener's TTFA; 20k floats is well under a megabyte."""
_SOURCE_IPS = (f"127.0.0.{n}" for n in itertools.cycle(range(2, 255)))
"""Each client process gets its own loopback source address, so its ephemeral ports
never collide with another's (or with TIME_WAIT left by an earlier phase)."""


class Client:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid

    @classmethod
    async def start(cls, target: Target, cpus: str | None) -> Client:
        command = [sys.executable, "-m", "bench.client", json.dumps(asdict(target))]
        if cpus is not None:
            command = ["taskset", "-c", cpus, *command]
        path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
        process = await asyncio.create_subprocess_exec(
            *command,
            env={**os.environ, "PYTHONPATH": path},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=REPLY_LIMIT,
        )
        client = cls(process)
        ready = await client._reply(30.0)
        client.pid = int(ready["pid"])
        return client

    async def call(self, command: dict[str, Any], timeout_s: float = 300.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        return await self._reply(timeout_s)

    async def _reply(self, timeout_s: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"client {self.process.pid} exited ({self.process.returncode})")
        return json.loads(line)

    async def stop(self) -> None:
        if self.process.returncode is None:
            try:
                await self.call({"cmd": "exit"}, timeout_s=30)
                await asyncio.wait_for(self.process.wait(), 10)
            except (TimeoutError, RuntimeError, BrokenPipeError, ConnectionResetError):
                self.process.kill()
                await self.process.wait()


class Clients:
    """Several client processes used as one: work is split evenly between them."""

    def __init__(self, clients: list[Client]) -> None:
        self.clients = clients

    @classmethod
    async def start(cls, count: int, target: Target, cpus: str | None) -> Clients:
        started = []
        for _ in range(count):
            own = Target(**{**asdict(target), "source_ip": next(_SOURCE_IPS)})
            started.append(await Client.start(own, cpus))
        return cls(started)

    @property
    def pids(self) -> list[int]:
        return [client.pid for client in self.clients]

    async def each(self, command: dict[str, Any], timeout_s: float = 300.0) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(c.call(dict(command), timeout_s) for c in self.clients)))

    async def split(
        self, command: dict[str, Any], n: int, window: int, timeout_s: float
    ) -> list[dict[str, Any]]:
        """``command`` with ``n`` and ``window`` divided between the processes."""
        k = len(self.clients)
        shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
        windows = [max(1, window // k)] * k
        return list(
            await asyncio.gather(
                *(
                    c.call({**command, "n": share, "window": w}, timeout_s + 30)
                    for c, share, w in zip(self.clients, shares, windows, strict=True)
                    if share
                )
            )
        )

    async def stop(self) -> None:
        await asyncio.gather(*(client.stop() for client in self.clients))
