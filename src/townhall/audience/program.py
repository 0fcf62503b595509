"""One space's program: encoded once, delivered live, as HLS and to the recording.

The mixer clock calls ``push`` every 20 ms inside the event loop. Each AAC access unit
the encoder completes goes three ways at once: ADTS-framed into the current live
chunk (published every ``live_chunk_ms``), into the current CMAF fragment (every
``fragment_ms``, which HLS groups into segments and the recorder appends to disk).
Nothing here waits on I/O except the recorder's buffered write of a finished fragment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from townhall.audience.adts import ADTS_HEADER_BYTES, adts_header, sampling_frequency_index
from townhall.audience.clip_window import ClipWindow
from townhall.audience.encoder import AAC_FRAME_SAMPLES, AacEncoder, AacPacket
from townhall.audience.fanout import LiveFanout
from townhall.audience.fmp4 import Fragment, Fragmenter, init_segment
from townhall.audience.hls import HlsPackager
from townhall.audience.opus_rendition import OpusRendition
from townhall.audience.pollers import RecentPollers
from townhall.audience.recorder import Recorder
from townhall.config import AudioSettings
from townhall.media import SAMPLE_RATE, PcmFrame

log = logging.getLogger(__name__)

LIVE_CONTENT_TYPE = "audio/aac"
"""ADTS: what ``<audio src>`` and ``MediaSource.isTypeSupported('audio/aac')`` take."""
HLS_PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
HLS_SEGMENT_CONTENT_TYPE = "video/iso.segment"
HLS_INIT_CONTENT_TYPE = "video/mp4"
RECORDING_CONTENT_TYPE = "audio/mp4"


@dataclass(slots=True)
class ProgramStats:
    frames_pushed: int = 0
    frames_after_close: int = 0
    """Pushed after ``close`` (a mixer tick racing the end): dropped."""
    encode_seconds: float = 0.0
    """CPU spent in ``push`` (encode and all three deliveries, the Opus rendition too)."""
    opus_encode_seconds: float = 0.0
    """Of which the Opus rendition (its encode and packaging)."""
    packets: int = 0
    live_chunks: int = 0
    fragments: int = 0
    segments: int = 0
    live_holdback_ms_max: float = 0.0
    """Most audio pushed but not yet in a published live chunk (encoder delay, AAC
    framing, chunking): the program's share of mouth-to-ear latency."""
    fragment_holdback_ms_max: float = 0.0
    """The same for CMAF fragments (what HLS and the recording wait for)."""


class ProgramOutput:
    """One space's program: encoded once, delivered live, as HLS and to the recording."""

    def __init__(self, settings: AudioSettings, recording_path: Path | None = None) -> None:
        self.settings = settings
        self._encoder = AacEncoder(settings.bitrate, sample_rate=SAMPLE_RATE)
        self._sample_rate_index = sampling_frequency_index(SAMPLE_RATE)
        framing = ADTS_HEADER_BYTES * SAMPLE_RATE / AAC_FRAME_SAMPLES
        self.live = LiveFanout(settings, stream_bytes_per_second=settings.bitrate / 8 + framing)
        self.hls = HlsPackager(settings)
        self.opus: OpusRendition | None = None
        """The Opus rendition, when enabled (settings.opus_bitrate); encoded from the first
        request for it on (`OpusRendition.demand`, called by its routes)."""
        if settings.opus_bitrate > 0:
            self.opus = OpusRendition(settings, settings.opus_bitrate, on_demand=True)
        self.hls_pollers = RecentPollers(settings.hls_listener_window_s)
        """HLS listeners: distinct recent playlist pollers (counted with the live ones)."""
        self.init_segment = init_segment(
            sample_rate=SAMPLE_RATE,
            channels=self._encoder.channels,
            audio_specific_config=self._encoder.audio_specific_config,
            bitrate=settings.bitrate,
        )
        self.hls.set_init_segment(self.init_segment)
        self.clip_window = ClipWindow(settings.clip_window_s)
        """The last seconds of the program, whole fragments, for live clips."""
        self._fragmenter = Fragmenter(
            sample_rate=SAMPLE_RATE,
            fragment_ms=settings.fragment_ms,
            sample_duration=AAC_FRAME_SAMPLES,
        )
        self._live_chunk_samples = SAMPLE_RATE * settings.live_chunk_ms // 1000
        self._live_parts: list[bytes] = []
        self._live_end = 0
        self._live_samples = 0
        self._recorder: Recorder | None = None
        self.recording_path = recording_path
        if recording_path is not None:
            self._recorder = Recorder(recording_path)
            self._recorder.write_init(self.init_segment)
        self._closed = False
        self.stats = ProgramStats()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def recorder(self) -> Recorder | None:
        return self._recorder

    @property
    def priming_samples(self) -> int:
        """Encoder delay at the head of every delivery's timeline (input sample 0 is at
        this program-clock sample)."""
        return self._encoder.priming_samples

    @property
    def duration_s(self) -> float:
        """Audio pushed so far."""
        return self._encoder.samples_in / SAMPLE_RATE

    def push(self, frame: PcmFrame) -> None:
        if self._closed:
            self.stats.frames_after_close += 1
            return
        started = time.thread_time()
        self.stats.frames_pushed += 1
        for packet in self._encoder.encode(frame):
            self._deliver(packet)
        if self.opus is not None:
            opus_started = time.thread_time()
            self.opus.push(frame)
            self.stats.opus_encode_seconds += time.thread_time() - opus_started
        self.stats.encode_seconds += time.thread_time() - started

    def close(self) -> None:
        """End the program: flush the encoder; live listeners get EOF; the playlist gets
        EXT-X-ENDLIST; the recording is flushed, fsynced and closed, a playable
        fragmented MP4 at ``recording_path``. Turning it into the final ``.m4a`` is the
        recordings' owner's (townhall.service.recordings), not the program's."""
        self._end()

    def _end(self) -> bool:
        """Everything that ends the program; True when it closed a recording."""
        if self._closed:
            return False
        self._closed = True
        for packet in self._encoder.flush():
            self._deliver(packet)
        self._publish_live()
        last = self._fragmenter.flush()
        if last is not None:
            self._store_fragment(last)
        self.hls.close()
        if self.opus is not None:
            self.opus.close()
        latest = self.hls.latest_sequence
        self.stats.segments = 0 if latest is None else latest + 1
        self.live.close()
        if self._recorder is None:
            return False
        self._recorder.close()
        return True

    def _deliver(self, packet: AacPacket) -> None:
        self.stats.packets += 1
        header = adts_header(
            len(packet.data), sample_rate_index=self._sample_rate_index, channels=1
        )
        self._live_parts.append(header + packet.data)
        self._live_samples += packet.duration
        self._live_end = packet.pts + packet.duration
        if self._live_samples >= self._live_chunk_samples:
            self._publish_live()
        fragment = self._fragmenter.add(packet.data, packet.pts)
        if fragment is not None:
            self._store_fragment(fragment)

    def _publish_live(self) -> None:
        if not self._live_parts:
            return
        chunk = b"".join(self._live_parts)
        duration_ms = self._live_samples * 1000 / SAMPLE_RATE
        self._live_parts = []
        self._live_samples = 0
        self.stats.live_chunks += 1
        self.stats.live_holdback_ms_max = max(
            self.stats.live_holdback_ms_max, self._holdback_ms(self._live_end)
        )
        self.live.publish(chunk, duration_ms)

    def _store_fragment(self, fragment: Fragment) -> None:
        self.stats.fragments += 1
        self.stats.fragment_holdback_ms_max = max(
            self.stats.fragment_holdback_ms_max, self._holdback_ms(fragment.end)
        )
        if self.hls.add_fragment(fragment) is not None:
            self.stats.segments += 1
        self.clip_window.add(fragment)
        if self._recorder is not None:
            self._recorder.append(fragment.data)

    def _holdback_ms(self, delivered_until: int) -> float:
        """Input audio not yet delivered, given the program-clock sample delivered up to
        (the clock starts with the encoder's priming, so input lags it by that much)."""
        input_delivered = delivered_until - self._encoder.priming_samples
        return max(0, self._encoder.samples_in - input_delivered) * 1000 / SAMPLE_RATE
