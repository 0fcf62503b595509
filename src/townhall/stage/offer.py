"""Checking a speaker's SDP offer before any peer connection is built for it.

aiortc's own parser reports problems with bare asserts and deep exceptions;
a speaker's client (and whoever debugs it) deserves a sentence saying what is
wrong. The stage accepts exactly one audio section that can carry Opus,
optionally a data channel, and nothing else (no video: nobody mixes it).
"""

from __future__ import annotations

from aiortc import sdp

OPUS_MIME = "audio/opus"
OPUS_CLOCK_RATE = 48_000
MAX_OFFER_CHARS = 64 * 1024
"""A real browser's audio offer is 2-6 KB; anything this large is not one."""
MAX_CANDIDATES = 64
"""A browser offers a handful of ICE candidates. The server sends connectivity checks to
every one, so an offer listing hundreds would make it probe addresses on someone's behalf."""

__all__ = ["InvalidOffer", "validate_offer"]


class InvalidOffer(ValueError):
    """The offer cannot start a stage connection; the message says why."""


def validate_offer(offer_sdp: str) -> sdp.SessionDescription:
    """Parse and check an offer; returns the parsed description or raises InvalidOffer."""
    if not isinstance(offer_sdp, str) or not offer_sdp.strip():
        raise InvalidOffer("the offer SDP is empty")
    if len(offer_sdp) > MAX_OFFER_CHARS:
        raise InvalidOffer(f"the offer SDP is larger than {MAX_OFFER_CHARS} characters")
    if not offer_sdp.lstrip().startswith("v=0"):
        raise InvalidOffer("the offer is not SDP (it must start with 'v=0')")
    try:
        description = sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:  # aiortc reports syntax errors with assert/ValueError/KeyError
        detail = str(exc) or type(exc).__name__
        raise InvalidOffer(f"the offer SDP could not be parsed: {detail}") from exc

    active = [m for m in description.media if m.port != 0]
    audio = [m for m in active if m.kind == "audio"]
    others = sorted({m.kind for m in active} - {"audio", "application"})
    if others:
        raise InvalidOffer(f"the stage takes audio only; the offer also has {', '.join(others)}")
    if not audio:
        raise InvalidOffer("the offer has no audio section (m=audio)")
    if len(audio) > 1:
        raise InvalidOffer(f"the offer has {len(audio)} audio sections; the stage takes one")
    media = audio[0]
    if not any(_is_opus(codec) for codec in media.rtp.codecs):
        offered = ", ".join(sorted({c.mimeType for c in media.rtp.codecs})) or "none"
        raise InvalidOffer(f"the audio section does not offer Opus/48000 (offered: {offered})")
    if not media.ice.usernameFragment or not media.ice.password:
        raise InvalidOffer("the offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")
    if not media.dtls.fingerprints:
        raise InvalidOffer("the offer has no DTLS fingerprint (a=fingerprint)")
    if not media.rtcp_mux:
        raise InvalidOffer("the offer does not use RTCP multiplexing (a=rtcp-mux)")
    candidates = sum(len(m.ice_candidates) for m in description.media)
    if candidates > MAX_CANDIDATES:
        raise InvalidOffer(
            f"the offer lists {candidates} ICE candidates (at most {MAX_CANDIDATES})"
        )
    return description


def _is_opus(codec: object) -> bool:
    mime = getattr(codec, "mimeType", "")
    return mime.lower() == OPUS_MIME and getattr(codec, "clockRate", None) == OPUS_CLOCK_RATE
