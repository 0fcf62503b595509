"""townhall as the bench runs it: ``townhall serve`` with stream workers, a live space
and one aiortc speaker sending the tone (the real path, WebRTC to listeners)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import httpx

from bench.procstat import children
from bench.speaker import connect_speaker

START_TIMEOUT_S: Final = 90.0
"""A loaded shared machine (load average 20+) has taken more than 30 s to start it."""
AUDIO_TIMEOUT_S: Final = 20.0
PASSWORD: Final = "bench-password-123"
ADMISSION_FOR_BENCH: Final = {
    "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0",
    "TOWNHALL_ADMISSION_ATTACK_MODE": "off",
    "TOWNHALL_ADMISSION_MAX_ADMISSIONS_PER_S": "1000000",
    "TOWNHALL_ADMISSION_MAX_LISTENERS": "0",
    "TOWNHALL_ADMISSION_MAX_LOOP_LAG_MS": "1000",
    "TOWNHALL_HTTP_MAX_CONNECTIONS_PER_ADDRESS": "0",  # thousands of listeners, 253 addresses
}


class Townhall:
    def __init__(
        self,
        workdir: Path,
        port: int,
        *,
        stream_workers: int,
        chunk_ms: int,
        bitrate: int,
        secret: str,
        cpus: str | None,
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.stream_port = port + 1
        self.stream_workers = stream_workers
        self.secret = secret
        self._chunk_ms = chunk_ms
        self._bitrate = bitrate
        self._cpus = cpus
        self.process: subprocess.Popen[bytes] | None = None
        self.space_id = ""
        self.url = f"http://127.0.0.1:{port}"
        self._pc: Any = None
        self._http: httpx.AsyncClient | None = None
        self._host: dict[str, str] = {}

    @property
    def pids(self) -> list[int]:
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *children(self.process.pid)]

    @property
    def stream_path(self) -> str:
        return f"/live/{self.space_id}.aac?ticket={{ticket}}"

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "TOWNHALL_SECRET": self.secret,
            "TOWNHALL_AUDIO_BITRATE": str(self._bitrate),
            "TOWNHALL_AUDIO_LIVE_CHUNK_MS": str(self._chunk_ms),
            "TOWNHALL_ARGON2_TIME_COST": "1",
            "TOWNHALL_ARGON2_MEMORY_KIB": "8192",
            "TOWNHALL_STAGE_ICE_HOST_ADDRESSES": "127.0.0.1",
            # A rehearsal from one machine: every listener comes from a few loopback
            # addresses, and the bench measures what the server can do, not the door's
            # configured pace (the waiting room is the loadtest's subject).
            **ADMISSION_FOR_BENCH,
        }
        command = [
            sys.executable, "-m", "townhall", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--data-dir", str(self.workdir / "data"),
            "--stream-workers", str(self.stream_workers),
        ]  # fmt: skip
        if self._cpus is not None:
            command = ["taskset", "-c", self._cpus, *command]
        with (self.workdir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self._http = httpx.AsyncClient(base_url=self.url, timeout=15)
        await self._wait_ready()
        await self._open_space()

    async def _wait_ready(self) -> None:
        assert self._http is not None and self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        urls = [f"{self.url}/api/spaces"]
        if self.stream_workers:
            urls.append(f"http://127.0.0.1:{self.stream_port}/healthz")
        for url in urls:
            while True:
                try:
                    if (await self._http.get(url)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"townhall did not start:\n{self.log()[-4000:]}")
                await asyncio.sleep(0.1)

    async def _open_space(self) -> None:
        http = self._http
        assert http is not None
        await http.post("/api/users", json={"username": "benchhost", "password": PASSWORD})
        token = await http.post("/api/tokens", json={"username": "benchhost", "password": PASSWORD})
        self._host = {"Authorization": f"Bearer {token.json()['token']}"}
        space = await http.post("/api/spaces", json={"title": "bench"}, headers=self._host)
        self.space_id = space.json()["id"]
        started = await http.post(f"/api/spaces/{self.space_id}/start", headers=self._host)
        started.raise_for_status()
        self._pc = await connect_speaker(http, self.space_id, self._host)
        await self._wait_for_audio()

    async def _wait_for_audio(self) -> None:
        """Until the speaker's tone flows: a live stream carries a full 48 kbps second."""
        assert self._http is not None
        join = (await self._http.post(f"/api/spaces/{self.space_id}/join")).json()
        if "live_url" not in join:
            raise RuntimeError(f"join gave no ticket: {join}")
        url = join["live_url"]
        if url.startswith("/"):
            url = self.url + url
        deadline = time.monotonic() + AUDIO_TIMEOUT_S
        async with httpx.AsyncClient(timeout=AUDIO_TIMEOUT_S) as http, http.stream(
            "GET", url
        ) as response:
            response.raise_for_status()
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received >= self._bitrate / 8:
                    return
                if time.monotonic() > deadline:
                    break
        raise RuntimeError(f"no audio from the speaker within {AUDIO_TIMEOUT_S} s")

    async def snapshot_listeners(self) -> int:
        assert self._http is not None
        return int((await self._http.get(f"/api/spaces/{self.space_id}")).json()["listeners"])

    def set_cpus(self, cpus: set[int]) -> None:
        """Move every thread of every server process (origin and workers) to ``cpus``."""
        for pid in self.pids:
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError, ValueError):
                    os.sched_setaffinity(int(task.name), cpus)

    async def stop(self) -> None:
        if self._pc is not None:
            await self._pc.close()
        if self._http is not None:
            await self._http.aclose()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
