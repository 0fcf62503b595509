"""Choosing the store: `--store URL`, TOWNHALL_STORE, or SQLite under the data dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from townhall.config import load_settings

SERVE = [sys.executable, "-m", "townhall", "serve"]


def test_the_default_store_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path)
    assert settings.store_url == f"sqlite:///{tmp_path / 'townhall.sqlite3'}"


def test_townhall_store_chooses_the_store(tmp_path: Path) -> None:
    url = "postgresql://townhall@127.0.0.1:5432/townhall"
    assert load_settings({"TOWNHALL_STORE": url}, data_dir=tmp_path).store_url == url
    flag = "sqlite:////srv/other.sqlite3"
    assert load_settings({"TOWNHALL_STORE": url}, store=flag).store_url == flag


def test_serve_refuses_an_unknown_store_url_before_starting(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*SERVE, "--data-dir", str(tmp_path), "--store", "mysql://127.0.0.1/townhall"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "unsupported store URL 'mysql://127.0.0.1/townhall'" in refused.stderr
    assert "Traceback" not in refused.stderr
