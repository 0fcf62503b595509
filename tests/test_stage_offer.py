"""Offer validation: a browser's audio offer passes, everything else says what is wrong."""

from __future__ import annotations

import pytest

from townhall.stage.offer import InvalidOffer, validate_offer

FINGERPRINT = ":".join(["6B", "8B", "5A", "AD", "0C", "3C", "0A", "EC"] * 4)

# Chromium's offer for one microphone track (candidates omitted, as when not waiting for ICE).
BROWSER_OFFER = """v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Xy7q
a=ice-pwd:3bF0e5Q2nXkL9aTqWz1rYcVd
a=ice-options:trickle
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendrecv
a=msid:- 5f1c2a3b-0000-4000-8000-000000000001
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001 cname:q2h4a9
""".replace("\n", "\r\n").replace("{FINGERPRINT}", FINGERPRINT)

VIDEO_SECTION = """m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=mid:1
a=sendrecv
a=rtcp-mux
a=rtpmap:96 VP8/90000
""".replace("\n", "\r\n")


def without_opus(offer: str) -> str:
    """The same offer with Opus (payload 111) and RED over Opus (63) taken out."""
    dropped = ("a=rtpmap:111", "a=fmtp:111", "a=rtcp-fb:111", "a=rtpmap:63", "a=fmtp:63")
    lines = [line for line in offer.split("\r\n") if not line.startswith(dropped)]
    return "\r\n".join(lines).replace("SAVPF 111 63 ", "SAVPF ")


def many_candidates(n: int) -> str:
    return "".join(
        f"a=candidate:{i} 1 udp 2122260223 10.0.{i // 250}.{i % 250 + 1} 5000{i % 10} typ host\r\n"
        for i in range(n)
    )


def test_a_browser_audio_offer_is_accepted() -> None:
    description = validate_offer(BROWSER_OFFER)
    assert [m.kind for m in description.media] == ["audio"]
    validate_offer(BROWSER_OFFER + many_candidates(8))


def test_a_rejected_video_section_is_ignored() -> None:
    validate_offer(BROWSER_OFFER + VIDEO_SECTION.replace("m=video 9", "m=video 0"))


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ("", "empty"),
        ("   \r\n", "empty"),
        ("x" * 70_000, "larger than"),
        ('{"type": "offer"}', "not SDP"),
        (BROWSER_OFFER.replace("m=audio 9 UDP", "m=audio nine UDP"), "could not be parsed"),
        (BROWSER_OFFER.replace("111 63 9 0 8", "111 63 9 0 8 abc"), "could not be parsed"),
        (BROWSER_OFFER.split("m=audio")[0], "no audio section"),
        (BROWSER_OFFER + VIDEO_SECTION, "audio only; the offer also has video"),
        (
            BROWSER_OFFER
            + BROWSER_OFFER[BROWSER_OFFER.index("m=audio") :].replace("a=mid:0", "a=mid:1"),
            "2 audio sections",
        ),
        (without_opus(BROWSER_OFFER), r"does not offer Opus/48000 \(offered: audio/CN, "),
        (BROWSER_OFFER.replace("a=ice-pwd:3bF0e5Q2nXkL9aTqWz1rYcVd\r\n", ""), "ICE credentials"),
        (BROWSER_OFFER.replace("a=fingerprint", "a=x-fingerprint"), "DTLS fingerprint"),
        (BROWSER_OFFER.replace("a=rtcp-mux\r\n", ""), "rtcp-mux"),
        (BROWSER_OFFER + many_candidates(65), "65 ICE candidates"),
    ],
)
def test_what_is_wrong_is_said(offer: str, message: str) -> None:
    with pytest.raises(InvalidOffer, match=message):
        validate_offer(offer)


def test_invalid_offer_is_a_value_error() -> None:
    assert issubclass(InvalidOffer, ValueError)
