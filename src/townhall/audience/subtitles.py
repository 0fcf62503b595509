"""The captions as an HLS subtitle rendition (WebVTT) beside the audio.

The master playlist (`master.m3u8`) names the audio media playlists (`index.m3u8`, the
AAC one every existing player already reads, and the Opus rendition's) and, when the
space has captions, a SUBTITLES group whose playlist (`captions.m3u8`) lists one WebVTT
segment per audio segment, with the same sequence numbers and durations. A caption segment is listed
only once recognition has settled past its end (`SETTLE_S`): a player fetches a
segment once, so listing it early would lose the cues still being recognized.
"""

from __future__ import annotations

from collections.abc import Iterable

from townhall.audience.hls import AAC_LC_CODECS, HLS_VERSION, HlsSegment
from townhall.audience.opus_rendition import variant_stream_inf
from townhall.captions.cues import Cue, webvtt

SETTLE_S = 5.0
"""Recognition delay budget: an utterance is cut after at most ~4 s and decoded in ~1."""
SUBTITLES_GROUP = "captions"
CAPTIONS_PLAYLIST = "captions.m3u8"
CAPTION_SEGMENT_URI = "captions/{sequence}.vtt"
MPEGTS_CLOCK = 90_000


def master_playlist(
    bitrate: int,
    *,
    captions: bool,
    media_uri: str = "index.m3u8",
    opus_bitrate: int | None = None,
) -> bytes:
    """The multivariant playlist: the AAC variant first (players that do not choose by
    CODECS take the first, and every player decodes AAC), then the Opus one when the
    program has it (players that choose by codec and bandwidth take it: the same speech
    in fewer bytes), each with the captions rendition when the space has one."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    group = ""
    if captions:
        lines.append(
            f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="{SUBTITLES_GROUP}",NAME="English",'
            f'LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,URI="{CAPTIONS_PLAYLIST}"'
        )
        group = f',SUBTITLES="{SUBTITLES_GROUP}"'
    aac = f'#EXT-X-STREAM-INF:BANDWIDTH={bitrate * 11 // 10},CODECS="{AAC_LC_CODECS}"'
    lines += [aac + group, media_uri]
    if opus_bitrate:
        stream_inf, uri = variant_stream_inf(opus_bitrate).splitlines()
        lines += [stream_inf + group, uri]
    return ("\n".join(lines) + "\n").encode()


def settled_segments(
    segments: Iterable[HlsSegment], fed_until_s: float, *, priming_s: float, ended: bool
) -> list[HlsSegment]:
    """The audio segments whose captions will not change any more: those that ended
    `SETTLE_S` before the newest audio given to the recognizer (program seconds; the
    segments' clock is `priming_s` ahead)."""
    settled_until = fed_until_s - SETTLE_S + priming_s
    return [s for s in segments if ended or s.start_s + s.duration_s <= settled_until]


def captions_playlist(segments: list[HlsSegment], target_duration: int, *, ended: bool) -> bytes:
    """The subtitle media playlist over `segments` (settled, consecutive, oldest first)."""
    first = segments[0].sequence if segments else 0
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
    ]
    for segment in segments:
        lines.append(f"#EXTINF:{segment.duration_s:.5f},")
        lines.append(CAPTION_SEGMENT_URI.format(sequence=segment.sequence))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


def caption_segment(cues: Iterable[Cue], segment: HlsSegment, *, priming_s: float) -> bytes:
    """The WebVTT of one segment: the cues that overlap it. Cue times are program
    seconds; the audio's media timeline starts `priming_s` earlier (the encoder's
    delay), which X-TIMESTAMP-MAP states (RFC 8216 §3.5)."""
    start = segment.start_s - priming_s
    end = start + segment.duration_s
    overlapping = [cue for cue in cues if cue.end_s > start and cue.start_s < end]
    mpegts = round(priming_s * MPEGTS_CLOCK)
    header = f"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000\n\n"
    return webvtt(overlapping, header=header).encode()
