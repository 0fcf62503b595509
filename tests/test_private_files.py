"""What the server writes to disk is its own: the ticket key, the database and the
recordings are readable by the server's user alone, from the moment they exist."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from test_audience_recorder import record
from townhall.audience.recorder import final_path_for, finalize_recording, partial_path
from townhall.config import load_settings
from townhall.services import SECRET_FILE, build_services, load_secret

WIDE_UMASK = 0o022
"""The usual default: without care, new files come out 0644 (world-readable)."""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def wide_umask():
    previous = os.umask(WIDE_UMASK)
    yield
    os.umask(previous)


@pytest.fixture
def no_chmod(monkeypatch):
    """A file that is created open to others and tightened afterwards can be read in
    between; the modes below must hold at creation, so chmod is not allowed."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"chmod after creation: {args}")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(Path, "chmod", refuse)


def test_secret_key_is_created_0600(tmp_path: Path, wide_umask, no_chmod) -> None:
    settings = load_settings({}, data_dir=tmp_path / "data")
    key = load_secret(settings)
    assert len(key) == 64
    assert mode(settings.data_dir / SECRET_FILE) == 0o600
    assert mode(settings.data_dir) == 0o700
    assert load_secret(settings) == key, "the key is kept across starts"


async def test_database_is_0600(tmp_path: Path, wide_umask, no_chmod) -> None:
    settings = load_settings({}, data_dir=tmp_path / "data")
    services = build_services(settings)
    await services.start()
    try:
        await services.accounts.sign_up("someone", "correct horse")
    finally:
        await services.stop()
    database = settings.database_path
    assert mode(database) == 0o600
    for sidecar in database.parent.glob(database.name + "-*"):  # WAL and shared memory
        assert mode(sidecar) == 0o600, sidecar


def test_recordings_are_0600_in_a_0700_directory(tmp_path: Path, wide_umask, no_chmod) -> None:
    recordings = tmp_path / "recordings"
    partial = partial_path(recordings, "space1")
    program = record(partial, 2.0)
    program.close()
    assert mode(recordings) == 0o700
    assert mode(partial) == 0o600
    final = final_path_for(partial)
    finalize_recording(partial, final)
    assert mode(final) == 0o600
