"""Captions without a server: cues and WebVTT, the HLS rendition, the bounded queue to
the recognizer process, the node-wide limit, and the recognizer itself on speech."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from speech import espeak, with_pauses, word_accuracy
from townhall.audience.hls import HlsSegment
from townhall.audience.program import ProgramOutput
from townhall.audience.subtitles import (
    SETTLE_S,
    caption_segment,
    captions_playlist,
    master_playlist,
    settled_segments,
)
from townhall.captions.captioner import CHUNK_MS, Captioner
from townhall.captions.cues import CaptionTrack, Cue, parse_webvtt, timestamp, webvtt
from townhall.captions.decoders import RECOGNIZER_RATE
from townhall.captions.models import pocketsphinx_files
from townhall.captions.recognizer import Downsampler, Recognition, RecognizerConfig
from townhall.config import AudioSettings, CaptionSettings
from townhall.domain.captions import CaptionsWithheld, captions_outcome, choose_captions
from townhall.domain.errors import Invalid, NotFound
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE
from townhall.service.captions import Captions

SENTENCES = ["good morning and welcome to the show", "thank you all for coming tonight"]


def test_a_client_that_passes_the_end_it_was_given_gets_no_cue_twice() -> None:
    """Reproduces a duplicate: cues kept to the microsecond, shown to the millisecond."""
    track = CaptionTrack(max_cues=10)
    track.add(Cue(0.1234567, 2.4204999, "hello there"))
    shown = track.since(None)[0].to_json()
    assert track.since(float(shown["end_s"])) == []
    track.add(Cue(3.0, 4.5, "next"))
    assert [c.text for c in track.since(float(shown["end_s"]))] == ["next"]


def test_the_track_is_bounded_and_cleans_what_it_keeps() -> None:
    track = CaptionTrack(max_cues=3)
    for n in range(5):
        track.add(Cue(n, n + 0.5, f"  cue   {n} "))
    track.add(Cue(9, 9.5, "   "))
    assert len(track) == 3 and track.total == 5
    assert [c.text for c in track.since(None)] == ["cue 2", "cue 3", "cue 4"]
    track.add(Cue(10, 11, "x" * 10_000))
    assert len(track.since(10.5)[0].text) == 500


def test_webvtt_escapes_and_reads_back() -> None:
    cues = [Cue(0.0, 1.5, "a <b> & c --> d"), Cue(3661.25, 3662.0, "later")]
    document = webvtt(cues)
    assert document.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n")
    assert "a &lt;b&gt; &amp; c --&gt; d" in document
    assert timestamp(3661.25) == "01:01:01.250"
    assert parse_webvtt(document) == cues


def _segments(count: int, duration_s: float = 1.0) -> list[HlsSegment]:
    return [HlsSegment(n, n * duration_s, duration_s, b"") for n in range(count)]


def test_master_playlist_adds_the_subtitle_group_only_with_captions() -> None:
    with_captions = master_playlist(48_000, captions=True).decode()
    assert "#EXT-X-MEDIA:TYPE=SUBTITLES" in with_captions
    assert 'SUBTITLES="captions"' in with_captions and with_captions.endswith("index.m3u8\n")
    without = master_playlist(48_000, captions=False).decode()
    assert "SUBTITLES" not in without and "index.m3u8" in without


def test_caption_segments_are_listed_once_settled_and_hold_the_overlapping_cues() -> None:
    segments = _segments(10)
    settled = settled_segments(segments, fed_until_s=8.0, priming_s=0.0, ended=False)
    assert [s.sequence for s in settled] == list(range(int(8.0 - SETTLE_S)))
    assert settled_segments(segments, 0.0, priming_s=0.0, ended=True) == segments
    playlist = captions_playlist(settled, 1, ended=False).decode()
    assert "#EXT-X-MEDIA-SEQUENCE:0" in playlist and "captions/2.vtt" in playlist
    assert "#EXT-X-ENDLIST" not in playlist
    cues = [Cue(0.2, 0.9, "first"), Cue(0.9, 2.5, "second"), Cue(4.0, 5.0, "third")]
    priming = 1024 / SAMPLE_RATE
    body = caption_segment(cues, HlsSegment(2, 2.0 + priming, 1.0, b""), priming_s=priming)
    text = body.decode()
    assert "X-TIMESTAMP-MAP=MPEGTS:1920,LOCAL:00:00:00.000" in text
    assert "second" in text and "first" not in text and "third" not in text


def _frames(samples: np.ndarray) -> list[np.ndarray]:
    usable = len(samples) - len(samples) % FRAME_SAMPLES
    return list(samples[:usable].reshape(-1, FRAME_SAMPLES))


def test_a_recognizer_that_is_behind_costs_dropped_audio_never_a_wait() -> None:
    """No process reads the queue: after `queue_seconds` every chunk is dropped and
    counted, and feeding never blocks the caller (the mixer clock)."""
    captioner = Captioner("s", RecognizerConfig(), queue_seconds=0.4, max_cues=10)
    silence = np.zeros(FRAME_SAMPLES * 50, dtype=np.int16)  # 1 s: five 200 ms chunks
    started = time.perf_counter()
    for frame in _frames(silence):
        captioner.feed(frame)
    elapsed = time.perf_counter() - started
    queued = 400 // CHUNK_MS
    assert captioner.stats.chunks_sent == queued
    assert captioner.stats.chunks_dropped == 5 - queued
    assert captioner.stats.seconds_dropped == pytest.approx((5 - queued) * CHUNK_MS / 1000)
    assert captioner.fed_s == pytest.approx(1.0)
    print(f"\n50 frames fed in {elapsed * 1000:.1f} ms")


async def test_the_recognizer_process_turns_speech_into_timed_cues() -> None:
    audio = with_pauses(SENTENCES, pause_s=1.5)
    lead = np.zeros(SAMPLE_RATE, dtype=np.int16)
    captioner = Captioner("s", RecognizerConfig(), queue_seconds=60, max_cues=100)
    captioner.start()
    try:
        for frame in _frames(np.concatenate([lead, audio])):
            captioner.feed(frame)  # faster than real time: the queue holds it all
        await captioner.stop(timeout_s=60)
    finally:
        await captioner.stop()
    cues = captioner.track.since(None)
    heard = " ".join(cue.text for cue in cues)
    accuracy = word_accuracy(" ".join(SENTENCES), heard)
    print(f"\nheard: {heard!r}, word accuracy {accuracy:.2f}")
    assert accuracy >= 0.5
    assert captioner.stats.chunks_dropped == 0
    first_speech_s = 1.0
    assert cues and abs(cues[0].start_s - first_speech_s) < 0.6, cues
    assert cues[-1].end_s <= (len(lead) + len(audio)) / SAMPLE_RATE + 0.1


async def test_the_node_wide_limit_leaves_later_spaces_without_captions(tmp_path: Path) -> None:
    captions = Captions(CaptionSettings(max_spaces=1), tmp_path)
    first, _ = captions.open("one", ProgramOutput(AudioSettings()), wanted=True)
    second, withheld = captions.open("two", ProgramOutput(AudioSettings()), wanted=True)
    unwanted = captions.open("three", ProgramOutput(AudioSettings()), wanted=False)
    try:
        assert first is not None and second is None and captions.refused_at_limit == 1
        assert withheld is CaptionsWithheld.NODE_LIMIT and unwanted == (None, None)
        assert captions.is_on("one") and not captions.is_on("two")
        with pytest.raises(NotFound):
            captions.cues("two")
        captions.program("two")  # live here, without captions: HLS still finds it
    finally:
        await captions.close("one", keep=True)
        await captions.close("two", keep=False)
        await captions.close("three", keep=False)
    assert (tmp_path / "one.vtt").read_text().startswith("WEBVTT")
    assert captions.cues("one") == []  # nothing was said; the replay's file answers
    with pytest.raises(NotFound):
        captions.program("one")


def test_the_option_is_checked_and_needs_a_captioner() -> None:
    with pytest.raises(Invalid) as bad:
        choose_captions("yes", available=True)
    assert bad.value.code == "invalid_captions"
    assert choose_captions(None, available=True) is True
    assert choose_captions(False, available=True) is False
    assert choose_captions(None, available=False) is False
    assert choose_captions(False, available=False) is False
    with pytest.raises(Invalid) as refused:
        choose_captions(True, available=False)
    assert refused.value.code == "captions_unavailable"


def test_a_node_answers_a_space_going_live_with_captions_or_a_reason() -> None:
    assert captions_outcome(False, available=False, running=9, limit=1) is None
    assert captions_outcome(True, available=True, running=1, limit=2) is None
    assert captions_outcome(True, available=True, running=2, limit=2) is CaptionsWithheld.NODE_LIMIT
    no_captioner = captions_outcome(True, available=False, running=0, limit=2)
    assert no_captioner is CaptionsWithheld.NO_CAPTIONER


def test_the_bundled_pocketsphinx_model_is_found() -> None:
    from pocketsphinx import get_model_path

    bundled = pocketsphinx_files(Path(get_model_path()) / "en-us")
    assert bundled is not None
    assert bundled["lm"].endswith("en-us.lm.bin") and bundled["dict"].endswith(".dict")


def test_speech_helper_makes_audible_speech() -> None:
    speech = espeak("hello")
    assert 0.3 < len(speech) / SAMPLE_RATE < 2.0 and np.abs(speech).max() > 3000


def test_feeding_after_stop_is_ignored() -> None:
    captioner = Captioner("s", RecognizerConfig(), queue_seconds=1, max_cues=10)
    asyncio.run(captioner.stop(timeout_s=0.1))
    captioner.feed(np.zeros(FRAME_SAMPLES, dtype=np.int16))
    assert captioner.stats.chunks_sent == 0 and captioner.fed_s == 0.0


def test_a_recognizer_does_not_outlive_a_killed_server(tmp_path: Path) -> None:
    """The server is SIGKILLed while its space is live: its recognizer process ends too."""
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "server.py"
    script.write_text(
        "import asyncio, sys\n"
        "from townhall.captions.captioner import Captioner\n"
        "from townhall.captions.recognizer import RecognizerConfig\n"
        "async def main():\n"
        "    c = Captioner('s', RecognizerConfig(), queue_seconds=1, max_cues=1)\n"
        "    c.start()\n"
        "    print(c.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        child = int(server.stdout.readline())
        time.sleep(1.0)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _running(child):
            time.sleep(0.2)
        assert not _running(child), "the recognizer outlived its server"
    finally:
        if server.poll() is None:
            server.kill()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class CountingDecoder:
    """An engine that names each utterance by its order and length: what the segmenter
    hands every engine (townhall.captions.decoders.UtteranceDecoder) is checked here."""

    def __init__(self) -> None:
        self.utterances: list[int] = []
        self._bytes: int | None = None

    def begin(self) -> None:
        assert self._bytes is None, "an utterance began inside another"
        self._bytes = 0

    def add(self, speech: bytes) -> None:
        assert self._bytes is not None, "speech outside an utterance"
        self._bytes += len(speech)

    def end(self) -> str:
        assert self._bytes is not None, "an utterance ended that never began"
        self.utterances.append(self._bytes)
        self._bytes = None
        return f"utterance {len(self.utterances)}"


def _at_16k(samples: np.ndarray) -> bytes:
    return Downsampler()(samples.tobytes())


def test_every_engine_gets_whole_utterances_on_the_program_clock() -> None:
    decoder = CountingDecoder()
    recognition = Recognition(RecognizerConfig(max_utterance_s=60), decoder)
    pause = np.zeros(SAMPLE_RATE, dtype=np.int16)
    first, second = espeak(SENTENCES[0]), espeak(SENTENCES[1])
    cues = recognition.feed(_at_16k(np.concatenate([pause, first, pause, pause])))
    recognition.skip_to(10.0)  # the parent dropped program audio up to 10 s
    cues += recognition.feed(_at_16k(np.concatenate([second, pause])))
    cues += recognition.finish()
    assert [text for _, _, text in cues] == ["utterance 1", "utterance 2"]
    (start1, end1, _), (start2, end2, _) = cues
    assert abs(start1 - 1.0) < 0.6 and abs(end1 - start1 - len(first) / SAMPLE_RATE) < 0.8
    assert abs(start2 - 10.0) < 0.6 and end2 > start2
    spoken = [len(first), len(second)]
    for heard, said in zip(decoder.utterances, spoken, strict=True):
        assert abs(heard / 2 / RECOGNIZER_RATE - said / SAMPLE_RATE) < 0.8


def test_speech_without_a_pause_is_cut_so_cues_keep_coming() -> None:
    decoder = CountingDecoder()
    recognition = Recognition(RecognizerConfig(max_utterance_s=1.0), decoder)
    speech = espeak(" ".join(SENTENCES))
    cues = recognition.feed(_at_16k(speech)) + recognition.finish()
    assert len(cues) >= len(speech) / SAMPLE_RATE / 1.5
    assert all(end - start <= 1.0 + 0.1 for start, end, _ in cues)
