"""HLS/CMAF: the packager's window, and Debian's ffmpeg playing it over HTTP."""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from tones import dominant_frequencies, tone_power
from townhall.audience.fmp4 import Fragment
from townhall.audience.hls import HlsPackager
from townhall.audience.program import ProgramOutput
from townhall.config import AudioSettings
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE

SETTINGS = AudioSettings()
FFMPEG_TIMEOUT_S = 30


def tone(freq: float, seconds: float, start_sample: int = 0) -> np.ndarray:
    t = (np.arange(round(seconds * SAMPLE_RATE)) + start_sample) / SAMPLE_RATE
    return np.round(0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def push(program: ProgramOutput, pcm: np.ndarray) -> None:
    for start in range(0, len(pcm), FRAME_SAMPLES):
        program.push(pcm[start : start + FRAME_SAMPLES])


@contextlib.contextmanager
def serve(hls: HlsPackager) -> Iterator[str]:
    """A tiny origin on 127.0.0.1 that serves the packager as the HTTP layer would."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body: bytes | None = None
            if self.path == "/index.m3u8":
                body, kind = hls.playlist(), "application/vnd.apple.mpegurl"
            elif self.path == "/init.mp4":
                body, kind = hls.init_segment(), "video/mp4"
            elif match := re.fullmatch(r"/(\d+)\.m4s", self.path):
                body, kind = hls.segment(int(match.group(1))), "video/iso.segment"
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.m3u8"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def ffmpeg_decode(url: str, timeout: float = FFMPEG_TIMEOUT_S) -> tuple[np.ndarray, str]:
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", url, "-f", "s16le", "-ac", "1",
         "-ar", str(SAMPLE_RATE), "-"],
        capture_output=True, timeout=timeout, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return np.frombuffer(done.stdout, dtype=np.int16), done.stderr.decode()


def extinfs(playlist: bytes) -> list[float]:
    return [float(x) for x in re.findall(rb"#EXTINF:([0-9.]+),", playlist)]


def test_ffmpeg_plays_the_ended_playlist_over_http() -> None:
    program = ProgramOutput(SETTINGS)
    push(program, tone(440, 6.0))
    program.close()
    playlist = program.hls.playlist()
    print("\n" + playlist.decode())
    assert playlist.startswith(b"#EXTM3U\n#EXT-X-VERSION:7\n")
    assert b'#EXT-X-MAP:URI="init.mp4"' in playlist and playlist.endswith(b"#EXT-X-ENDLIST\n")
    durations = extinfs(playlist)
    assert all(0 < d <= 2.0 for d in durations)
    assert all(abs(d - SETTINGS.segment_ms / 1000) < 0.05 for d in durations[:-1])
    assert b"#EXT-X-TARGETDURATION:1\n" in playlist
    with serve(program.hls) as url:
        pcm, errors = ffmpeg_decode(url)
    assert errors == ""
    assert abs(len(pcm) / SAMPLE_RATE - sum(durations)) < 0.05
    steady = pcm[SAMPLE_RATE // 2 : -SAMPLE_RATE // 2]
    assert abs(dominant_frequencies(steady, SAMPLE_RATE, 1)[0] - 440) < 2
    assert tone_power(steady, SAMPLE_RATE, 440) > -14


def test_ffmpeg_follows_the_live_playlist_to_its_end() -> None:
    """A live window: ffmpeg starts near the edge, reloads, and stops at ENDLIST."""
    program = ProgramOutput(SETTINGS)
    push(program, tone(660, 4.0))
    with serve(program.hls) as url:
        reader = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", url, "-f", "s16le", "-"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            started = time.monotonic()
            sent = 4.0
            while sent < 6.5:  # 2.5 s more, in real time, while ffmpeg plays
                push(program, tone(660, 0.1, round(sent * SAMPLE_RATE)))
                sent += 0.1
                time.sleep(max(0.0, started + (sent - 4.0) - time.monotonic()))
            program.close()
            out, err = reader.communicate(timeout=FFMPEG_TIMEOUT_S)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
    assert reader.returncode == 0 and err == b"", err.decode()
    pcm = np.frombuffer(out, dtype=np.int16)
    print(f"\nlive HLS: ffmpeg decoded {len(pcm) / SAMPLE_RATE:.2f} s")
    assert len(pcm) / SAMPLE_RATE > 3.0  # from ~3 segments behind the edge to the end
    assert abs(dominant_frequencies(pcm[:-SAMPLE_RATE // 4], SAMPLE_RATE, 1)[0] - 660) < 2


def fragment(n: int, samples: int = 24_000) -> Fragment:
    return Fragment(n + 1, n * samples, samples, SAMPLE_RATE, f"frag{n}".encode())


def test_window_slides_and_expired_segments_disappear_after_the_grace() -> None:
    settings = AudioSettings(fragment_ms=500, segment_ms=1000, hls_window_segments=3)
    hls = HlsPackager(settings, grace_segments=2)
    assert hls.playlist().count(b"#EXTINF") == 0 and hls.latest_sequence is None
    done = [hls.add_fragment(fragment(n)) for n in range(20)]
    segments = [s for s in done if s is not None]
    assert [s.sequence for s in segments] == list(range(10))
    assert all(s.duration_s == 1.0 for s in segments)
    assert hls.segment(9) == b"frag18frag19"
    playlist = hls.playlist()
    assert b"#EXT-X-MEDIA-SEQUENCE:7\n" in playlist
    assert re.findall(rb"\n(\d+)\.m4s", playlist) == [b"7", b"8", b"9"]
    assert hls.segment(5) is not None  # left the playlist, still fetchable
    assert hls.segment(4) is None  # past the grace
    assert hls.segment(10) is None  # not made yet
    assert b"ENDLIST" not in playlist
    hls.add_fragment(fragment(20, 12_000))
    hls.close()
    assert hls.playlist().endswith(b"#EXTINF:0.25000,\n10.m4s\n#EXT-X-ENDLIST\n")


def test_target_duration_covers_every_rounded_extinf() -> None:
    hls = HlsPackager(AudioSettings(segment_ms=1000))
    hls.add_fragment(fragment(0, 48_000 + 40_000))  # an oversized one (1.83 s)
    assert b"#EXT-X-TARGETDURATION:2\n" in hls.playlist()


def test_multivariant_playlist_names_the_codec() -> None:
    text = HlsPackager(SETTINGS).multivariant_playlist("index.m3u8").decode()
    assert 'CODECS="mp4a.40.2"' in text and text.endswith("\nindex.m3u8\n")
