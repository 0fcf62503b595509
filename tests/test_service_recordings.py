"""A space whose node crashed is ended at the next start, and its recording recovered:
once, quietly, with its length on the space (issue 7: the partial file was deleted
twice and every successful recovery logged "could not recover the recording")."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from test_audience_recorder import decode_file, record
from tones import dominant_frequencies
from townhall.audience.recorder import final_path_for, partial_path
from townhall.config import load_settings
from townhall.domain.spaces import Space, SpaceState, User
from townhall.media import SAMPLE_RATE
from townhall.service.ids import new_id
from townhall.service.spaces import Spaces
from townhall.services import build_services

SPOKEN_S = 2.0
TONE_HZ = 440.0


@pytest.fixture
def crashed_space(tmp_path: Path) -> tuple[Path, Space]:
    """A data dir whose store says a recorded space is live, with the partial recording
    a node killed mid-space leaves (its audio: SPOKEN_S of TONE_HZ)."""
    return tmp_path / "data", Space(
        id=new_id(),
        title="cut off",
        host=User(new_id(), "ann"),
        state=SpaceState.LIVE,
        created_at=datetime.now(UTC),
        started_at=datetime.now(UTC),
        record=True,
    )


async def test_a_crashed_nodes_recording_is_recovered_once_and_quietly(
    crashed_space: tuple[Path, Space], caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    data_dir, space = crashed_space
    settings = load_settings({}, data_dir=data_dir)
    before = build_services(settings)
    await before.store.open()
    await before.store.create_user(space.host.id, space.host.username, "not a real hash")
    await before.store.save_space(space)
    await before.store.close()
    partial = partial_path(settings.recordings_dir, space.id)
    partial.parent.mkdir(parents=True, exist_ok=True)
    record(partial, SPOKEN_S, TONE_HZ).close()  # no finalize: what a crash leaves

    unlinks: list[Path] = []
    real_unlink = Path.unlink

    def counted_unlink(path: Path, missing_ok: bool = False) -> None:
        if path == partial:
            unlinks.append(path)
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", counted_unlink)
    services = build_services(settings)
    with caplog.at_level(logging.INFO):
        await services.start()
        try:
            ended = await services.store.get_space(space.id)
        finally:
            await services.stop()

    problems = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert problems == [], [r.getMessage() for r in problems]
    assert len(unlinks) <= 1, f"the partial file was deleted {len(unlinks)} times"
    assert not partial.exists()
    assert ended is not None and ended.state is SpaceState.ENDED
    assert ended.recording_seconds == pytest.approx(SPOKEN_S, abs=0.6)
    final = final_path_for(partial)
    audio = decode_file(final)
    assert len(audio) / SAMPLE_RATE == pytest.approx(SPOKEN_S, abs=0.6)
    assert dominant_frequencies(audio, SAMPLE_RATE, 1)[0] == pytest.approx(TONE_HZ, abs=5)


def test_spaces_have_one_recordings_owner(tmp_path: Path) -> None:
    """The service names and finishes recordings through one object, the rooms' own."""
    services = build_services(load_settings({}, data_dir=tmp_path / "data"))
    assert isinstance(services.spaces, Spaces)
    assert services.spaces.recordings is services.spaces.rooms.recordings
