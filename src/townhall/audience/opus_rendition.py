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
"""

from __future__ import annotations

import struct

from townhall.audience.fmp4 import Fragment, Fragmenter, box, init_segment
from townhall.audience.hls import HlsPackager
from townhall.audience.opus_encoder import OPUS_FRAME_SAMPLES, OpusEncoder
from townhall.config import AudioSettings
from townhall.media import SAMPLE_RATE, PcmFrame

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
    """Encodes the program once more to Opus and packages it as HLS (CMAF parts)."""

    def __init__(self, settings: AudioSettings, bitrate: int) -> None:
        self._encoder = OpusEncoder(bitrate, sample_rate=SAMPLE_RATE)
        self.bitrate = bitrate
        self.hls = HlsPackager(settings)
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
        self.fragments = 0

    def push(self, frame: PcmFrame) -> None:
        for packet in self._encoder.encode(frame):
            self._add(self._fragmenter.add(packet.data, packet.pts))

    def close(self) -> None:
        for packet in self._encoder.flush():
            self._add(self._fragmenter.add(packet.data, packet.pts))
        self._add(self._fragmenter.flush())
        self.hls.close()

    def _add(self, fragment: Fragment | None) -> None:
        if fragment is not None:
            self.fragments += 1
            self.hls.add_fragment(fragment)
