"""Choosing a node's role: `--role`, TOWNHALL_ROLE, `all` by default; an edge without
the deployment's shared state, or an unknown role, is refused before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from townhall.config import load_settings

SERVE = [sys.executable, "-m", "townhall", "serve"]


def test_the_role_is_all_unless_told(tmp_path: Path) -> None:
    assert load_settings({}, data_dir=tmp_path).role == "all"
    assert load_settings({"TOWNHALL_ROLE": "edge"}).role == "edge"
    assert load_settings({"TOWNHALL_ROLE": "edge"}, role="origin").role == "origin"


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, "--data-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TOWNHALL_STATE": "memory", **env},
    )


def test_an_edge_needs_the_shared_state(tmp_path: Path) -> None:
    refused = _serve(tmp_path, "--role", "edge")
    assert refused.returncode == 2
    assert "--role edge needs the deployment's shared state" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    by_flag = _serve(tmp_path, "--role", "relay")
    assert by_flag.returncode == 2 and "invalid choice: 'relay'" in by_flag.stderr
    by_env = _serve(tmp_path, TOWNHALL_ROLE="relay")
    assert by_env.returncode == 2
    assert "TOWNHALL_ROLE must be one of all, origin, edge, not 'relay'" in by_env.stderr
    assert "Traceback" not in by_flag.stderr + by_env.stderr
