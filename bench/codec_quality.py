"""AAC vs Opus for the program, at equal bitrates: which needs fewer bits for the same quality.

    .venv/bin/python -m bench.codec_quality [--bitrates 24,32,48,64] [--cpu-seconds 60]

The same program audio goes through townhall's own encoders (the AAC-LC one every space
uses today, townhall.audience.encoder, and the Opus one, townhall.audience.opus_encoder,
20 ms frames), is decoded again (PyAV), aligned to the input by cross-correlation and
scored:

- **speech** (Debian's `espeak-ng`, two voices): PESQ wideband (ITU-T P.862.2, the `pesq`
  package) on 16 kHz copies; the standard objective measure for coded speech, MOS-LQO
  from 1 to ~4.64;
- **a music-like signal** (a three-note chord, six harmonics each, 5.5 Hz vibrato, a new
  chord every 2 s): log-spectral distance in dB (RMS over bins of the dB difference
  between input and decoded short-time spectra, averaged over frames; bins more than
  80 dB under the input's peak floored). PESQ is defined for speech only; the LSD sees
  what low-bitrate codecs do to music (band limits, spectral holes, smeared partials).

It prints both codecs at each nominal bitrate with the bitrate actually produced, the
bitrate Opus needs to match AAC at 48 kbps on each measure (the lowest of a finer Opus
sweep that scores at least as well), and the CPU each encoder costs per live space (% of
one core, encoding 20 ms frames as the mixer clock pushes them). No network, no server.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from pesq import pesq

from townhall.audience.encoder import AacEncoder
from townhall.audience.opus_encoder import OPUS_FRAME_SAMPLES, OpusEncoder
from townhall.audience.program import ProgramOutput
from townhall.config import AudioSettings
from townhall.media import SAMPLE_RATE

Signal = npt.NDArray[np.float32]
"""Mono float audio in [-1, 1] at SAMPLE_RATE."""

SPEECH_TEXT = (
    "Welcome to the town hall. Tonight we talk about the new bridge, the library's opening "
    "hours and the budget for next year. Please keep your questions short, raise your hand "
    "to speak, and remember that everyone here can hear you. Our first speaker is the mayor."
)
SPEECH_VOICES = ("en-us", "en+f3")
"""A male and a female voice: codecs treat their pitch ranges differently."""
CHORDS_HZ = ((220.0, 277.18, 329.63), (196.0, 246.94, 293.66), (174.61, 220.0, 261.63))
CHORD_S = 2.0
MUSIC_S = 12.0
HARMONICS = 6
VIBRATO_HZ = 5.5
VIBRATO_DEPTH = 0.006
"""Relative frequency swing (~10 cents)."""
PEAK_LEVEL = 0.5
PESQ_RATE = 16_000
LSD_FFT = 2048
LSD_FLOOR_DB = 80.0
OPUS_SWEEP_KBPS = (12, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64)
REFERENCE_KBPS = 48
MAX_ALIGN_SAMPLES = 8_192


@dataclass(frozen=True)
class Coded:
    """One encode and decode of a signal: what came out and how many bits it took."""

    decoded: Signal
    kbps: float


def speech() -> Signal:
    """The text in each voice, one after the other, resampled to 48 kHz."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is missing: scripts/install-system-deps installs it")
    parts = []
    with tempfile.TemporaryDirectory() as folder:
        for voice in SPEECH_VOICES:
            wav = Path(folder) / f"{voice}.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", "160", "-w", str(wav), SPEECH_TEXT], check=True
            )
            parts.append(_read_wav(wav))
    joined = np.concatenate(parts)
    return (joined * (PEAK_LEVEL / max(1e-9, float(np.max(np.abs(joined)))))).astype(np.float32)


def _read_wav(path: Path) -> Signal:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def music_like() -> Signal:
    """Chords of harmonic tones with vibrato and a soft attack: sustained, pitched,
    wideband (harmonics up to ~2 kHz), what a jingle or background music puts in."""
    t = np.arange(int(MUSIC_S * SAMPLE_RATE)) / SAMPLE_RATE
    vibrato = 1.0 + VIBRATO_DEPTH * np.sin(2 * np.pi * VIBRATO_HZ * t)
    phase_rate = np.cumsum(vibrato) / SAMPLE_RATE
    chord_index = (t // CHORD_S).astype(int) % len(CHORDS_HZ)
    since_chord = t % CHORD_S
    envelope = np.minimum(1.0, since_chord / 0.05) * np.exp(-since_chord * 0.4)
    out = np.zeros_like(t)
    for which, chord in enumerate(CHORDS_HZ):
        active = chord_index == which
        for note in chord:
            for harmonic in range(1, HARMONICS + 1):
                tone = np.sin(2 * np.pi * note * harmonic * phase_rate) / harmonic**1.5
                out += np.where(active, tone, 0.0)
    out *= envelope
    return (out * (PEAK_LEVEL / np.max(np.abs(out)))).astype(np.float32)


def _frames(signal: Signal) -> Iterable[npt.NDArray[np.int16]]:
    """The signal as the mixer clock pushes it: 20 ms int16 frames, the last padded."""
    pcm = np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16)
    padded = np.zeros(-(-len(pcm) // OPUS_FRAME_SAMPLES) * OPUS_FRAME_SAMPLES, dtype=np.int16)
    padded[: len(pcm)] = pcm
    return padded.reshape(-1, OPUS_FRAME_SAMPLES)


def _decode(codec: str, payloads: list[bytes], extradata: bytes | None) -> Signal:
    context = av.CodecContext.create(codec, "r")
    context.sample_rate = SAMPLE_RATE
    context.layout = "mono"
    if extradata:
        context.extradata = extradata
    as_float = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    out = []
    for payload in [*payloads, None]:
        for frame in context.decode(av.Packet(payload) if payload is not None else None):
            out += [f.to_ndarray().reshape(-1) for f in as_float.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in as_float.resample(None)]
    return np.concatenate(out).astype(np.float32)


def code_aac(signal: Signal, kbps: int) -> Coded:
    encoder = AacEncoder(kbps * 1000)
    packets = [p for frame in _frames(signal) for p in encoder.encode(frame)] + encoder.flush()
    payloads = [p.data for p in packets]
    decoded = _decode("aac", payloads, encoder.audio_specific_config)
    return Coded(decoded, _kbps(payloads, len(signal)))


def code_opus(signal: Signal, kbps: int) -> Coded:
    encoder = OpusEncoder(kbps * 1000)
    packets = [p for frame in _frames(signal) for p in encoder.encode(frame)] + encoder.flush()
    payloads = [p.data for p in packets]
    return Coded(_decode("libopus", payloads, None), _kbps(payloads, len(signal)))


def _kbps(payloads: list[bytes], samples: int) -> float:
    return sum(len(p) for p in payloads) * 8 / (samples / SAMPLE_RATE) / 1000


def aligned(reference: Signal, decoded: Signal) -> tuple[Signal, Signal]:
    """The decoded signal shifted by the codec's delay (found by cross-correlation)."""
    n = min(len(reference), SAMPLE_RATE * 4)
    size = 1 << (2 * n).bit_length()
    spectrum = np.fft.rfft(decoded[: n + MAX_ALIGN_SAMPLES], size) * np.conj(
        np.fft.rfft(reference[:n], size)
    )
    correlation = np.fft.irfft(spectrum, size)[:MAX_ALIGN_SAMPLES]
    delay = int(np.argmax(correlation))
    shifted = decoded[delay:]
    length = min(len(reference), len(shifted))
    return reference[:length], shifted[:length]


def _resample(signal: Signal, rate: int) -> Signal:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(signal.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32)


def pesq_wb(reference: Signal, decoded: Signal) -> float:
    ref, deg = aligned(reference, decoded)
    return float(pesq(PESQ_RATE, _resample(ref, PESQ_RATE), _resample(deg, PESQ_RATE), "wb"))


def log_spectral_distance(reference: Signal, decoded: Signal) -> float:
    ref, deg = aligned(reference, decoded)
    window = np.hanning(LSD_FFT).astype(np.float32)
    hop = LSD_FFT // 2
    starts = range(0, len(ref) - LSD_FFT, hop)
    ref_power = np.array([np.abs(np.fft.rfft(ref[s : s + LSD_FFT] * window)) ** 2 for s in starts])
    deg_power = np.array([np.abs(np.fft.rfft(deg[s : s + LSD_FFT] * window)) ** 2 for s in starts])
    floor = float(ref_power.max()) * 10 ** (-LSD_FLOOR_DB / 10)
    difference = 10 * np.log10(np.maximum(ref_power, floor) / np.maximum(deg_power, floor))
    return float(np.mean(np.sqrt(np.mean(difference**2, axis=1))))


def encode_cpu_percent(make: Callable[[], AacEncoder | OpusEncoder], seconds: float) -> float:
    """% of one core an encoder takes to keep up with a live program (20 ms pushes)."""
    program = np.concatenate([speech(), music_like()])
    repeats = max(1, int(np.ceil(seconds * SAMPLE_RATE / len(program))))
    frames = list(_frames(np.tile(program, repeats)[: int(seconds * SAMPLE_RATE)]))
    encoder = make()
    started = time.process_time()
    for frame in frames:
        encoder.encode(frame)
    spent = time.process_time() - started
    return 100.0 * spent / (len(frames) * OPUS_FRAME_SAMPLES / SAMPLE_RATE)


def program_cpu_percent(opus_bitrate: int, seconds: float) -> float:
    """% of one core (process time, so other load on the machine does not count) the
    whole program push takes: AAC encode, live chunks, CMAF, HLS, and the Opus rendition
    when `opus_bitrate` > 0."""
    program = np.concatenate([speech(), music_like()])
    repeats = max(1, int(np.ceil(seconds * SAMPLE_RATE / len(program))))
    frames = list(_frames(np.tile(program, repeats)[: int(seconds * SAMPLE_RATE)]))
    output = ProgramOutput(replace(AudioSettings(), opus_bitrate=opus_bitrate))
    if output.opus is not None:
        output.opus.demand()  # listened to: encoded from the first request on
    started = time.process_time()
    for frame in frames:
        output.push(frame)
    spent = time.process_time() - started
    output.close()
    return 100.0 * spent / (len(frames) * OPUS_FRAME_SAMPLES / SAMPLE_RATE)


def needed_opus_kbps(
    target: float, scores: dict[int, tuple[float, float]], better: Callable[[float, float], bool]
) -> str:
    """The lowest Opus bitrate of the sweep that scores at least `target` (nominal and actual)."""
    for kbps in sorted(scores):
        score, actual = scores[kbps]
        if better(score, target) or score == target:
            return f"{kbps} kbps nominal ({actual:.1f} kbps actual)"
    return f"more than {max(scores)} kbps"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bitrates", default="24,32,48,64")
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    args = parser.parse_args()
    bitrates = [int(b) for b in args.bitrates.split(",")]
    talk, music = speech(), music_like()
    print(
        f"speech: {len(talk) / SAMPLE_RATE:.1f} s (espeak-ng {', '.join(SPEECH_VOICES)}); "
        f"music-like: {len(music) / SAMPLE_RATE:.1f} s"
    )
    print(
        f"{'kbps':>5} | {'AAC PESQ-WB':>11} {'LSD dB':>7} {'actual':>7} | "
        f"{'Opus PESQ-WB':>12} {'LSD dB':>7} {'actual':>7}"
    )
    speech_opus: dict[int, tuple[float, float]] = {}
    music_opus: dict[int, tuple[float, float]] = {}
    aac_at: dict[int, tuple[float, float]] = {}
    for kbps in sorted(set(bitrates) | set(OPUS_SWEEP_KBPS)):
        opus_talk, opus_music = code_opus(talk, kbps), code_opus(music, kbps)
        speech_opus[kbps] = (pesq_wb(talk, opus_talk.decoded), opus_talk.kbps)
        music_opus[kbps] = (log_spectral_distance(music, opus_music.decoded), opus_music.kbps)
        if kbps not in bitrates and kbps != REFERENCE_KBPS:
            continue
        aac_talk, aac_music = code_aac(talk, kbps), code_aac(music, kbps)
        aac_at[kbps] = (
            pesq_wb(talk, aac_talk.decoded),
            log_spectral_distance(music, aac_music.decoded),
        )
        print(
            f"{kbps:>5} | {aac_at[kbps][0]:>11.2f} {aac_at[kbps][1]:>7.2f} "
            f"{(aac_talk.kbps + aac_music.kbps) / 2:>7.1f} | "
            f"{speech_opus[kbps][0]:>12.2f} {music_opus[kbps][0]:>7.2f} "
            f"{(opus_talk.kbps + opus_music.kbps) / 2:>7.1f}"
        )
    aac_pesq, aac_lsd = aac_at[REFERENCE_KBPS]
    print(f"\nOpus needs, to match AAC at {REFERENCE_KBPS} kbps:")
    print(
        f"  speech (PESQ-WB >= {aac_pesq:.2f}): "
        f"{needed_opus_kbps(aac_pesq, speech_opus, lambda a, b: a > b)}"
    )
    print(
        f"  music-like (LSD <= {aac_lsd:.2f} dB): "
        f"{needed_opus_kbps(aac_lsd, music_opus, lambda a, b: a < b)}"
    )
    print(
        "  Opus sweep, speech PESQ-WB: "
        + ", ".join(f"{k}:{s:.2f}" for k, (s, _) in sorted(speech_opus.items()))
    )
    print(
        "  Opus sweep, music LSD dB:   "
        + ", ".join(f"{k}:{s:.2f}" for k, (s, _) in sorted(music_opus.items()))
    )
    aac_cpu = encode_cpu_percent(lambda: AacEncoder(REFERENCE_KBPS * 1000), args.cpu_seconds)
    opus_cpu = encode_cpu_percent(lambda: OpusEncoder(REFERENCE_KBPS * 1000), args.cpu_seconds)
    print(
        f"\nencode CPU per live space ({args.cpu_seconds:.0f} s of program, 20 ms pushes, "
        f"{REFERENCE_KBPS} kbps): AAC {aac_cpu:.2f} % of a core, Opus {opus_cpu:.2f} %"
    )

    without = program_cpu_percent(0, args.cpu_seconds)
    with_opus = program_cpu_percent(32_000, args.cpu_seconds)
    print(
        f"whole program push per live space: {without:.2f} % of a core without the Opus "
        f"rendition, {with_opus:.2f} % with it at 32 kbps (+{with_opus - without:.2f} %)"
    )


if __name__ == "__main__":
    main()
