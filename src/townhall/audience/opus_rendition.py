"""The program's second rendition: Opus in CMAF fMP4, for players that take it.

bench/codec_quality.py measured townhall's encoders on the same program audio: for
speech Opus at 12 kbps scores the PESQ-WB of AAC at 48 kbps, and at 32 kbps (the
default here) far better; on a music-like signal Opus at equal bitrate is slightly
behind by log-spectral distance. A space is mostly speech, so a listener whose player
takes Opus (Chromium's MSE does, `audio/mp4; codecs="opus"`) gets the same or better
audio for two thirds of the bytes; the AAC rendition stays for every other player.

One more encode per live space (the bench measures its CPU): the mixer's 20 ms frames
are Opus frames, so each push makes one packet; packets are grouped into the same
`fragment_ms` CMAF fragments and `segment_ms` segments as AAC, served by its own
HlsPackager (townhall.audience.hls) at /hls/{id}/opus/index.m3u8. Not recorded: the
recording stays the AAC one.

On demand (`on_demand=True`, as every live program has it): most spaces have no Opus
listener, and the encode is then ~1 % of a core per space for nothing (bench/spaces.py,
bench/space_parts.py). Until the first request for the rendition (`demand()`, called
by the Opus routes) the program's frames only go into a bounded backlog of one segment
and one part; the first request encodes that backlog at once (a few milliseconds), so
the playlist it gets already lists a whole segment and the first listener hears audio
as fast as with an eager encoder. From then on every frame is encoded until the end.
The rendition's timeline starts at the backlog's first frame, not at the program's.
"""

from __future__ import annotations

import struct
import time
from collections import deque

from townhall.audience.fmp4 import Fragment, Fragmenter, box, init_segment
from townhall.audience.hls import HlsPackager
from townhall.audience.opus_encoder import OPUS_FRAME_SAMPLES, OpusEncoder
from townhall.config import AudioSettings
from townhall.media import FRAME_SECONDS, SAMPLE_RATE, PcmFrame

OPUS_CODECS = "opus"
"""The RFC 6381 codecs value: HLS's CODECS attribute, MSE's isTypeSupported."""
OPUS_MIME = f'audio/mp4; codecs="{OPUS_CODECS}"'


def opus_sample_entry(*, channels: int, pre_skip: int, input_sample_rate: int) -> bytes:
    """`Opus` sample entry with its `dOps` box ("Encapsulation of Opus in ISO Base Media
    File Format", v0.8.1): an AudioSampleEntry at 48 kHz, then the Opus header's fields
    big-endian (mapping family 0: mono or stereo, no channel table)."""
    dops = box(
        b"dOps",
        struct.pack(">BBHIhB", 0, channels, pre_skip, input_sample_rate, 0, 0),
    )
    return box(
        b"Opus",
        b"\0" * 6,
        struct.pack(">H", 1),  # data_reference_index
        b"\0" * 8,
        struct.pack(">HHHHI", channels, 16, 0, 0, SAMPLE_RATE << 16),
        dops,
    )


OPUS_FOLDER = "opus"
"""The Opus rendition's playlist, init segment, segments and parts: /hls/{id}/opus/..."""
OPUS_PLAYLIST_URI = f"{OPUS_FOLDER}/index.m3u8"
"""The Opus media playlist, relative to /hls/{id}/ (api/listening.py serves it)."""
BANDWIDTH_OVERHEAD = 1.25
"""Peak bits per second over the codec's: the ~150-byte moof of each 200 ms part."""


def variant_stream_inf(bitrate: int) -> str:
    """The Opus rendition's entry in a multivariant (master) playlist: a variant of its
    own (a different codec, not an alternate of the AAC one), so a player that cannot
    decode Opus skips it by CODECS."""
    return (
        f'#EXT-X-STREAM-INF:BANDWIDTH={int(bitrate * BANDWIDTH_OVERHEAD)},CODECS="{OPUS_CODECS}"'
        f"\n{OPUS_PLAYLIST_URI}\n"
    )


class OpusRendition:
    """Encodes the program once more to Opus and packages it as HLS (CMAF parts); with
    `on_demand`, only from the first `demand()` on (see the module's docstring)."""

    def __init__(self, settings: AudioSettings, bitrate: int, *, on_demand: bool = False) -> None:
        self._encoder = OpusEncoder(bitrate, sample_rate=SAMPLE_RATE)
        self.bitrate = bitrate
        self._behind_s = 0.0
        """While the backlog is encoded: how long before now the frame being encoded was
        pushed, so the playlist's dates (EXT-X-PROGRAM-DATE-TIME) stay true."""
        self.hls = HlsPackager(settings, clock=self._wall_clock)
        self.init_segment = init_segment(
            sample_rate=SAMPLE_RATE,
            channels=self._encoder.channels,
            audio_specific_config=b"",
            bitrate=bitrate,
            sample_entry=opus_sample_entry(
                channels=self._encoder.channels,
                pre_skip=self._encoder.pre_skip,
                input_sample_rate=SAMPLE_RATE,
            ),
        )
        self.hls.set_init_segment(self.init_segment)
        self._fragmenter = Fragmenter(
            sample_rate=SAMPLE_RATE,
            fragment_ms=settings.fragment_ms,
            sample_duration=OPUS_FRAME_SAMPLES,
        )
        backlog_frames = round((settings.segment_ms + settings.fragment_ms) / 1000 / FRAME_SECONDS)
        self._backlog: deque[PcmFrame] | None = (
            deque(maxlen=backlog_frames) if on_demand else None
        )
        """Frames not encoded yet (None once encoding: always, or since the first demand)."""
        self.fragments = 0

    @property
    def encoding(self) -> bool:
        """Whether frames are encoded as they come (always, or since the first demand)."""
        return self._backlog is None

    def demand(self) -> None:
        """Someone asked for the rendition: encode from now on, the backlog first."""
        backlog, self._backlog = self._backlog or deque(), None
        for index, frame in enumerate(backlog):
            self._behind_s = (len(backlog) - 1 - index) * FRAME_SECONDS
            self._encode(frame)
        self._behind_s = 0.0

    def push(self, frame: PcmFrame) -> None:
        if self._backlog is not None:
            self._backlog.append(frame)
        else:
            self._encode(frame)

    def close(self) -> None:
        if self._backlog is None:
            for packet in self._encoder.flush():
                self._add(self._fragmenter.add(packet.data, packet.pts))
            self._add(self._fragmenter.flush())
        self.hls.close()

    def _encode(self, frame: PcmFrame) -> None:
        for packet in self._encoder.encode(frame):
            self._add(self._fragmenter.add(packet.data, packet.pts))

    def _add(self, fragment: Fragment | None) -> None:
        if fragment is not None:
            self.fragments += 1
            self.hls.add_fragment(fragment)

    def _wall_clock(self) -> float:
        return time.time() - self._behind_s
