"""The stage's public surface is what the rest of the server is told to use."""

from __future__ import annotations

import inspect

import townhall.stage
from townhall.stage import StageRoom


def test_exported_names() -> None:
    assert sorted(townhall.stage.__all__) == [
        "InvalidOffer",
        "Metronome",
        "RoomStats",
        "StageRoom",
        "StageUnavailable",
        "use_host_addresses",
    ]
    assert issubclass(townhall.stage.InvalidOffer, ValueError)
    assert issubclass(townhall.stage.StageUnavailable, RuntimeError)


def test_room_contract() -> None:
    params = list(inspect.signature(StageRoom.__init__).parameters)
    assert params == ["self", "space_id", "settings", "program", "on_change", "metronome"]
    for name in ("start", "stop", "connect", "disconnect"):
        assert inspect.iscoroutinefunction(getattr(StageRoom, name)), name
    for name in ("set_muted", "speaking"):
        assert not inspect.iscoroutinefunction(getattr(StageRoom, name)), name
    assert isinstance(StageRoom.connected, property)
