"""Debian's nginx with the shipped template (deploy/nginx), started by a test in a temp
dir in front of one or more townhall nodes, and stopped by its PID."""

from __future__ import annotations

import os
import shutil
import string
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from conftest import free_port

TEMPLATE = Path(__file__).parents[1] / "deploy" / "nginx" / "townhall.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAS_NGINX = Path(NGINX).exists()
START_TIMEOUT_S = 10.0


@contextmanager
def running_nginx(
    prefix: Path, upstreams: Sequence[str], streams: Sequence[str] = ()
) -> Iterator[str]:
    """nginx on a free loopback port proxying to `upstreams` ("host:port" each, round
    robin), the snapshot and the join to `streams` (the nodes' stream ports; by default
    `upstreams`); yields its base URL."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = string.Template(TEMPLATE.read_text()).safe_substitute(
        PREFIX=str(prefix),
        ORIGIN="; server ".join(upstreams),
        STREAM="; server ".join(streams or upstreams),
        LISTEN=f"127.0.0.1:{port}",
        USER_DIRECTIVE="user root;" if os.geteuid() == 0 else "",
    )
    (prefix / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/api/health", timeout=1)
                break
            except httpx.HTTPError:
                assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
