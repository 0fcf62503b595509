"""The stage: speakers' WebRTC peers, the server-side mixer with mix-minus, the program feed."""

from townhall.stage.ice import use_host_addresses
from townhall.stage.metronome import Metronome
from townhall.stage.offer import InvalidOffer
from townhall.stage.room import RoomStats, StageRoom, StageUnavailable

__all__ = [
    "InvalidOffer",
    "Metronome",
    "RoomStats",
    "StageRoom",
    "StageUnavailable",
    "use_host_addresses",
]
