"""The state backend is chosen once, from `--state` / TOWNHALL_STATE."""

from __future__ import annotations

import subprocess
import sys

import pytest

from townhall.config import load_settings
from townhall.state import MemoryState, RedisState, open_state
from townhall.state.choose import UnknownStateUrl


async def test_the_url_chooses_the_backend() -> None:
    assert isinstance(open_state("memory"), MemoryState)
    redis = open_state("redis://127.0.0.1:1/3")
    assert isinstance(redis, RedisState)
    await redis.close()
    with pytest.raises(UnknownStateUrl):
        open_state("postgresql://nope")


def test_settings_read_the_state_and_public_url_from_the_environment() -> None:
    settings = load_settings(
        {"TOWNHALL_STATE": "redis://10.0.0.9:6379/0", "TOWNHALL_PUBLIC_URL": "https://a.example/"}
    )
    assert settings.state == "redis://10.0.0.9:6379/0"
    assert settings.node_url == "https://a.example"
    assert load_settings({}, host="::1", port=9000).node_url == "http://[::1]:9000"


def test_serve_refuses_an_unknown_state_url_clearly() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "townhall", "serve", "--state", "mongodb://x", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 2
    assert "unknown state backend 'mongodb://x'" in ran.stderr
    assert "Traceback" not in ran.stderr
