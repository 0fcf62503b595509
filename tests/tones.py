"""Tone helpers shared by the audio tests: send a known tone, record what comes back,
and measure it with an FFT.

Sending:   `ToneTrack(440, start_after_s=0.5)` is an aiortc audio track that sends
           silence, then a sine, in real time; `tone_started_at` is the wall-clock
           time (time.time()) its first tone frame left the track.
Recording: `Recording` collects mono audio with the wall-clock arrival time of every
           chunk; feed it from a program sink (`recording.add(frame)`) or from a
           received aiortc track (`record_track(track, recording)`), or from the live
           stream's ADTS AAC (`read_live_stream(url, recording, stop_at)`).
Speaking:  `ToneClient` is a speaker's browser played by an aiortc peer: it sends a
           ToneTrack and records what it hears (`offer` -> signalling -> `accept(answer)`).
Measuring: `tone_power` (dBFS of one frequency), `steady_tone_power` (the same, robust
           to dropped frames), `dominant_frequencies` (the strongest peaks),
           `first_onset` (when a tone starts). All take a 1-D mono array,
           either integers (int16 full scale = 1.0) or floats in [-1, 1].

Levels are dBFS of a sinusoid: a full-scale sine is 0 dB, one at amplitude 0.1 is -20 dB.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fractions
import itertools
import time

import av
import httpx
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms, the stage's frame
FLOOR_DB = -200.0
"""What the measures return for no signal at all (instead of -inf)."""
ONSET_WINDOW_S = 0.020
"""Analysis window for onsets: 50 Hz resolution, enough to tell 440 from 660 Hz."""
ONSET_HOP_S = 0.002
BLOCK_S = 0.1
"""Block length for steady_tone_power: 10 Hz resolution, many blocks per second."""


# -- sending ---------------------------------------------------------------------------------


class ToneTrack(MediaStreamTrack):
    """Real-time aiortc audio track: silence for `start_after_s`, then a sine of `freq` Hz.

    Paced on the monotonic clock like aiortc's own AudioStreamTrack (frame n is released at
    first_recv + n * 20 ms). `start_after_s` counts from the first recv(), i.e. from when the
    connection starts sending. Set `freq = None` to fall silent again.
    """

    kind = "audio"

    def __init__(
        self,
        freq: float | None,
        start_after_s: float = 0.0,
        amplitude: float = 0.3,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        super().__init__()
        self.freq = freq
        self.amplitude = amplitude
        self.sample_rate = sample_rate
        self._start_after_samples = round(start_after_s * sample_rate)
        self._sent = 0  # samples
        self._t0: float | None = None
        self.tone_started_at: float | None = None
        """time.time() when the first frame holding tone was returned by recv()."""

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        else:
            await asyncio.sleep(max(0.0, self._t0 + self._sent / self.sample_rate - now))
        # Equal stereo channels, as a browser's mono microphone is carried: a mono frame would
        # be upmixed at -3 dB by aiortc's encoder and arrive quieter than `amplitude`.
        samples = np.repeat(self._next_samples(), 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = self.sample_rate
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        frame.pts = self._sent
        self._sent += FRAME_SAMPLES
        return frame

    def _next_samples(self) -> npt.NDArray[np.int16]:
        n = np.arange(self._sent, self._sent + FRAME_SAMPLES)
        tone_on = (n >= self._start_after_samples) & (self.freq is not None)
        if not tone_on.any():
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        if self.tone_started_at is None:
            self.tone_started_at = time.time()
        t = (n - self._start_after_samples) / self.sample_rate
        wave = self.amplitude * np.sin(2 * np.pi * (self.freq or 0.0) * t) * tone_on
        return np.round(wave * 32767).astype(np.int16)


# -- recording -------------------------------------------------------------------------------


class Recording:
    """Mono audio plus the wall-clock time each chunk arrived (time.time())."""

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        self._chunks: list[npt.NDArray[np.int16]] = []
        self._ends: list[int] = []  # cumulative sample count after each chunk
        self._times: list[float] = []

    def add(self, samples: npt.NDArray[np.int16], at: float | None = None) -> None:
        """Append a chunk; usable directly as a stage ProgramSink."""
        self._chunks.append(np.array(samples, dtype=np.int16).reshape(-1))
        self._ends.append((self._ends[-1] if self._ends else 0) + self._chunks[-1].size)
        self._times.append(time.time() if at is None else at)

    __call__ = add

    @property
    def duration_s(self) -> float:
        return (self._ends[-1] if self._ends else 0) / self.sample_rate

    def samples(self, since: float | None = None) -> npt.NDArray[np.int16]:
        """Everything recorded, or only the chunks that arrived at or after wall time `since`."""
        first = self._first_chunk(since)
        if first >= len(self._chunks):
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks[first:])

    def arrival_of_sample(self, index: int) -> float:
        """Wall time at which the chunk holding sample `index` (of `samples()`) arrived."""
        chunk = bisect.bisect_right(self._ends, index)
        return self._times[min(chunk, len(self._times) - 1)]

    def longest_gap(self, since: float, until: float) -> float:
        """The longest wait (s) between arrivals from wall time `since` to `until`."""
        times = [since, *(t for t in self._times if since < t < until), until]
        return max(later - earlier for earlier, later in itertools.pairwise(times))

    def onset_time(
        self, freq: float, threshold_db: float, since: float | None = None
    ) -> float | None:
        """Wall time of arrival of the chunk where `freq` first reaches `threshold_db`
        (looking only at chunks that arrived at or after `since`), or None."""
        first = self._first_chunk(since)
        onset = first_onset(self.samples(since), self.sample_rate, freq, threshold_db)
        if onset is None:
            return None
        offset = self._ends[first - 1] if first else 0
        return self.arrival_of_sample(offset + round(onset * self.sample_rate))

    def _first_chunk(self, since: float | None) -> int:
        return 0 if since is None else bisect.bisect_left(self._times, since)


async def read_live_stream(url: str, recording: Recording, stop_at: float) -> int:
    """Decode the ADTS stream as it arrives; every decoded sample is stamped with the
    arrival time of the bytes that carried it."""
    codec = av.CodecContext.create("aac", "r")
    received = 0
    async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/aac"
        async for chunk in response.aiter_raw():
            arrived = time.time()
            received += len(chunk)
            for packet in codec.parse(chunk):
                for frame in codec.decode(packet):  # AAC decodes to planar float
                    recording.add(frame.to_ndarray().mean(axis=0) * 32767, at=arrived)
            if arrived >= stop_at:
                return received
    return received


async def record_track(track: MediaStreamTrack, recording: Recording) -> None:
    """Read an aiortc audio track into `recording` until it ends (run it as a task)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            recording.add(_mono(frame))


class ToneClient:
    """A speaker's browser, played by an aiortc peer: sends `tone`, records into `heard`.

        client = await ToneClient.offer_with(ToneTrack(440, start_after_s=0.5))
        answer = ...  # send client.offer through the signalling under test
        await client.accept(answer)
        ...; await client.close()

    No STUN server (tests are offline); the offer carries all candidates (gathered first).
    """

    def __init__(self, tone: MediaStreamTrack) -> None:
        self.tone = tone
        self.heard = Recording()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.offer = ""
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.addTransceiver(tone, direction="sendrecv")
        self.pc.on("track", self._on_track)

    @classmethod
    async def offer_with(cls, tone: MediaStreamTrack) -> ToneClient:
        client = cls(tone)
        await client.pc.setLocalDescription(await client.pc.createOffer())
        client.offer = client.pc.localDescription.sdp
        return client

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(record_track(track, self.heard)))


def _mono(frame: av.AudioFrame) -> npt.NDArray[np.int16]:
    data = frame.to_ndarray()
    if frame.format.is_planar:
        mono = data.mean(axis=0)
    else:
        mono = data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
    if np.issubdtype(data.dtype, np.floating):
        mono = mono * 32767
    return np.round(mono).astype(np.int16)


# -- measuring -------------------------------------------------------------------------------


def tone_power(samples: npt.ArrayLike, sample_rate: int, freq: float) -> float:
    """Level in dBFS of the sinusoid at `freq` in `samples` (0 dB = full-scale sine).

    A Hann-windowed projection on exactly `freq` (not the nearest FFT bin), so the answer
    does not depend on the length of the clip, and a tone a few bins away leaks in well
    below -40 dB. Compare two results to get a ratio in dB.
    """
    x = _as_float(samples)
    if x.size == 0:
        return FLOOR_DB
    window = np.hanning(x.size)
    phase = np.exp(-2j * np.pi * freq * np.arange(x.size) / sample_rate)
    amplitude = 2 * abs(np.dot(x * window, phase)) / window.sum()
    return _db(amplitude)


def steady_tone_power(
    samples: npt.ArrayLike, sample_rate: int, freq: float, block_s: float = BLOCK_S
) -> float:
    """Median of `tone_power` over consecutive blocks (100 ms): the level a tone holds most
    of the time. Prefer it for audio that went through a live pipeline: one long projection
    under-reads when frames were dropped or skipped (each gap jumps the phase and a Hann
    window weights its centre), while a few bad blocks do not move the median.
    """
    x = _as_float(samples)
    size = max(1, round(block_s * sample_rate))
    blocks = [x[i : i + size] for i in range(0, x.size - size + 1, size)]
    if not blocks:
        return tone_power(x, sample_rate, freq)
    return float(np.median([tone_power(b, sample_rate, freq) for b in blocks]))


def dominant_frequencies(samples: npt.ArrayLike, sample_rate: int, n: int) -> list[float]:
    """The `n` strongest spectral peaks in Hz, strongest first (fewer if there are fewer peaks).

    Resolution is sample_rate / len(samples) (1 Hz for one second), refined by parabolic
    interpolation between bins.
    """
    x = _as_float(samples)
    if x.size < 4:
        return []
    magnitude = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    inner = magnitude[1:-1]
    peaks = np.flatnonzero((inner > magnitude[:-2]) & (inner >= magnitude[2:]) & (inner > 0)) + 1
    strongest = peaks[np.argsort(magnitude[peaks])[::-1][:n]]
    log_mag = np.log(np.maximum(magnitude, 1e-20))
    result = []
    for k in strongest:
        a, b, c = log_mag[k - 1], log_mag[k], log_mag[k + 1]
        denominator = a - 2 * b + c
        shift = 0.5 * (a - c) / denominator if denominator else 0.0
        result.append(float((k + shift) * sample_rate / x.size))
    return result


def first_onset(
    samples: npt.ArrayLike, sample_rate: int, freq: float, threshold: float
) -> float | None:
    """Seconds from the start of `samples` at which `freq` first reaches `threshold` dBFS.

    Slides a 20 ms Hann window in 2 ms hops and returns the centre of the first window at or
    above the threshold: accurate to a few ms for a tone that starts abruptly. None if the
    tone never gets there.
    """
    x = _as_float(samples)
    window_len = round(ONSET_WINDOW_S * sample_rate)
    hop = max(1, round(ONSET_HOP_S * sample_rate))
    if x.size < window_len:
        return None
    window = np.hanning(window_len)
    kernel = window * np.exp(-2j * np.pi * freq * np.arange(window_len) / sample_rate)
    frames = np.lib.stride_tricks.sliding_window_view(x, window_len)[::hop]
    amplitudes = 2 * np.abs(frames @ kernel) / window.sum()
    above = np.flatnonzero(amplitudes >= 10 ** (threshold / 20))
    if above.size == 0:
        return None
    return (above[0] * hop + window_len / 2) / sample_rate


def _as_float(samples: npt.ArrayLike) -> npt.NDArray[np.float64]:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"expected 1-D mono samples, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float64) / (np.iinfo(x.dtype).max + 1)
    return x.astype(np.float64)


def _db(amplitude: float) -> float:
    return max(FLOOR_DB, 20 * float(np.log10(max(amplitude, 1e-12))))
