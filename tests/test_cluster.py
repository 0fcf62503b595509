"""scripts/cluster: Redis, PostgreSQL, townhall nodes and nginx in one command on
loopback; a space created and started through nginx is live on every node's
snapshot; `down` leaves none of the PIDs it started running."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CLUSTER = Path(__file__).resolve().parent.parent / "scripts" / "cluster"
UP_TIMEOUT_S = 240
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(NGINX).exists(), reason="needs Debian's nginx"),
]


def _alive(pid: int, started: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(stat[19]) == started and stat[0] != "Z"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # not under pytest's tmp_path: PostgreSQL runs as `postgres` and must reach it
    root = Path(tempfile.mkdtemp(prefix="townhall-cluster-test-"))
    root.chmod(0o755)
    try:
        yield root / "cluster"
    finally:
        subprocess.run([str(CLUSTER), "down", "--state-dir", str(root / "cluster")],
                       capture_output=True, timeout=120, check=False)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _cluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER), *args], capture_output=True, text=True, timeout=UP_TIMEOUT_S, check=False
    )


def test_up_serves_one_space_on_every_node_and_down_stops_exactly_it(state_dir: Path) -> None:
    started = _cluster("up", "--state-dir", str(state_dir), "--origins", "2", "--edges", "1")
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads((state_dir / "cluster.json").read_text())
    nginx, nodes = state["urls"]["nginx"], state["urls"]["nodes"]
    assert nginx in started.stdout and all(node["url"] in started.stdout for node in nodes)
    assert [p["name"] for p in state["processes"]] == [
        "redis", "postgres", "origin1", "origin2", "edge1", "nginx",
    ]  # fmt: skip
    assert all(_alive(p["pid"], p["started"]) for p in state["processes"])
    assert _cluster("status", "--state-dir", str(state_dir)).returncode == 0

    with httpx.Client(base_url=nginx, timeout=10) as http:
        http.post("/api/users", json={"username": "host", "password": "password123"})
        token = http.post("/api/tokens", json={"username": "host", "password": "password123"})
        host = {"Authorization": f"Bearer {token.json()['token']}"}
        space = http.post("/api/spaces", json={"title": "cluster"}, headers=host).json()
        assert http.post(f"/api/spaces/{space['id']}/start", headers=host).status_code == 200
    for node in nodes:
        snapshot = httpx.get(f"{node['url']}/api/spaces/{space['id']}", timeout=10)
        assert snapshot.status_code == 200, (node, snapshot.text)
        assert snapshot.json()["state"] == "live", (node, snapshot.json())

    stopped = _cluster("down", "--state-dir", str(state_dir))
    assert stopped.returncode == 0, stopped.stderr
    left = [p for p in state["processes"] if _alive(p["pid"], p["started"])]
    assert not left, f"still running after down: {left}"
    assert _cluster("status", "--state-dir", str(state_dir)).returncode == 1
