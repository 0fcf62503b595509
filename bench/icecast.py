"""Icecast 2 as the bench runs it: Debian's binary, our config, our source.

The config mirrors townhall's live stream: one ~1 s burst for new listeners, an
~8 s backlog bound (``queue-size``) past which Icecast drops a slow listener,
and no client cap below the process's file limit. The source is an HTTP PUT with
``Content-Type: audio/aac`` paced in real time, 0.5 s of ADTS per write.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from typing import Final

from bench.source import adts_frames

ICECAST_BINARY: Final = "icecast2"
ICECAST_USER: Final = "icecast2"
"""Icecast refuses to run as root; it drops to this user (Debian's package makes it)."""
MOUNT: Final = "/stream.aac"
SOURCE_PASSWORD: Final = "bench-source-password"
SOURCE_CHUNK_S: Final = 0.5
START_TIMEOUT_S: Final = 10.0

CONFIG: Final = """<icecast>
  <location>bench</location><admin>bench@localhost</admin>
  <limits>
    <clients>{clients}</clients>
    <sources>2</sources>
    <queue-size>{queue_bytes}</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>{burst_bytes}</burst-size>
  </limits>
  <authentication>
    <source-password>{password}</source-password>
    <admin-user>admin</admin-user><admin-password>{password}</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>0</fileserve>
  <paths>
    <basedir>{workdir}</basedir><logdir>{workdir}</logdir><webroot>{workdir}</webroot>
    <adminroot>{workdir}</adminroot><pidfile>{workdir}/icecast.pid</pidfile>
  </paths>
  <logging>
    <accesslog>-</accesslog><errorlog>error.log</errorlog><loglevel>2</loglevel>
  </logging>
  <security>
    <chroot>0</chroot>
    {changeowner}
  </security>
</icecast>
"""


def available() -> bool:
    return shutil.which(ICECAST_BINARY) is not None


class Icecast:
    def __init__(
        self,
        workdir: Path,
        port: int,
        *,
        bitrate: int,
        burst_s: float,
        max_lag_s: float,
        cpus: str | None,
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.bitrate = bitrate
        self._cpus = cpus
        rate = bitrate / 8 * 1.03  # ADTS headers add ~3 % at 48 kbps
        self._burst_bytes = int(rate * burst_s)
        self._queue_bytes = int(rate * max_lag_s)
        self.process: subprocess.Popen[bytes] | None = None
        self._source: asyncio.Task[None] | None = None
        self.source_bytes = 0

    @property
    def pids(self) -> list[int]:
        return [self.process.pid] if self.process and self.process.poll() is None else []

    @property
    def stream_path(self) -> str:
        return MOUNT

    def log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        changeowner = ""
        if os.geteuid() == 0:
            user = pwd.getpwnam(ICECAST_USER)
            os.chown(self.workdir, user.pw_uid, user.pw_gid)
            changeowner = (
                f"<changeowner><user>{ICECAST_USER}</user><group>icecast</group></changeowner>"
            )
        config = self.workdir / "icecast.xml"
        config.write_text(
            CONFIG.format(
                clients=1_000_000,
                queue_bytes=self._queue_bytes,
                burst_bytes=self._burst_bytes,
                password=SOURCE_PASSWORD,
                port=self.port,
                workdir=self.workdir,
                changeowner=changeowner,
            )
        )
        command = [ICECAST_BINARY, "-c", str(config)]
        if self._cpus is not None:
            command = ["taskset", "-c", self._cpus, *command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"icecast did not start:\n{self.log()}") from None
                await asyncio.sleep(0.1)
        ready = asyncio.get_running_loop().create_future()
        self._source = asyncio.create_task(self._feed(ready))
        await asyncio.wait_for(ready, START_TIMEOUT_S)

    async def _feed(self, ready: asyncio.Future[None]) -> None:
        """PUT the tone in real time, ``SOURCE_CHUNK_S`` of audio per write."""
        frames = adts_frames(self.bitrate)
        auth = base64.b64encode(f"source:{SOURCE_PASSWORD}".encode()).decode()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            (
                f"PUT {MOUNT} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Authorization: Basic {auth}\r\nContent-Type: audio/aac\r\n"
                "Ice-Public: 0\r\nIce-Name: townhall bench\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            ready.set_exception(RuntimeError(f"icecast refused the source: {head!r}"))
            return
        ready.set_result(None)
        chunk_samples = int(48_000 * SOURCE_CHUNK_S)
        start = time.monotonic()
        sent_samples = 0
        index = 0
        try:
            while True:
                parts = []
                samples = 0
                while samples < chunk_samples:
                    frame, duration = frames[index % len(frames)]
                    parts.append(frame)
                    samples += duration
                    index += 1
                data = b"".join(parts)
                writer.write(data)
                self.source_bytes += len(data)
                sent_samples += samples
                await writer.drain()
                await asyncio.sleep(max(0.0, start + sent_samples / 48_000 - time.monotonic()))
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._source is not None:
            self._source.cancel()
            await asyncio.gather(self._source, return_exceptions=True)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
