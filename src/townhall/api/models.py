"""The JSON API's request and response bodies, as pydantic models.

One definition does two jobs: request models validate what clients send (api/bodies.py
parses bytes straight into them with pydantic's own JSON parser, which refuses deep
nesting, huge numbers and lone surrogates as invalid JSON instead of raising in the
middle of a handler), and every model, requests and responses alike, is what
`GET /openapi.json` (api/contract.py) publishes. Models check shape and documented
bounds; the domain's rules (domain/) stay the authority on meaning.

Models are strict (no "yes" for true, no 7 for "7") and ignore unknown fields, so old
clients keep working as objects grow. A field's validation error becomes the code
`invalid_<field>` unless the model names another in `error_codes`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from townhall.domain.accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, USERNAME_PATTERN
from townhall.domain.reactions import ALLOWED_REACTIONS
from townhall.domain.spaces import MAX_TITLE_LENGTH, SpaceState, SpeakPolicy
from townhall.domain.stage import Role
from townhall.service.ids import ID_ALPHABET, ID_LENGTH

ID_PATTERN = f"^[{ID_ALPHABET}]{{{ID_LENGTH}}}$"
"""Every id the server hands out (users and spaces): what a path segment must look like."""
MAX_TIMESTAMP_LENGTH = 64
MAX_TOKEN_LENGTH = 2_048
"""Queue tokens and proof-of-work strings are a few hundred bytes; more is not ours."""
MAX_LISTING_OFFSET = 10_000
"""Deeper pages are a scrape, not a person browsing."""
MAX_SDP_BYTES = 32 * 1024
"""An SDP offer is ~10 KB with every codec listed; the offer route's body cap."""


class RequestBody(BaseModel):
    """Base of request bodies: strict types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    error_codes: ClassVar[dict[str, str]] = {}
    """Field name -> error code, where an existing code predates these models."""


class ResponseBody(BaseModel):
    """Base of response bodies: documentation of what the server sends (extensible)."""

    model_config = ConfigDict(extra="allow")


# -- requests ------------------------------------------------------------------------


class Credentials(RequestBody):
    """Sign-up, API token and browser session: the same two fields."""

    username: str = Field(pattern=USERNAME_PATTERN.pattern, examples=["ann_42"])
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class NewSpace(RequestBody):
    title: str = Field(min_length=1, max_length=MAX_TITLE_LENGTH)
    scheduled_for: str | None = Field(
        default=None,
        max_length=MAX_TIMESTAMP_LENGTH,
        json_schema_extra={"format": "date-time"},
        description="ISO-8601; without it the space is ready to start now.",
    )
    record: bool = False
    speak_policy: SpeakPolicy | None = None
    captions: bool | None = Field(
        default=None,
        description="Live captions; default: on where the server runs a captioner.",
    )


class UserChoice(RequestBody):
    """Who an action is about: `user_id`, or `username` for people typing a name."""

    user_id: str | None = Field(default=None, pattern=ID_PATTERN)
    username: str | None = Field(default=None, max_length=64)


class StageChange(UserChoice):
    role: Literal["cohost", "speaker"]


class Reaction(RequestBody):
    emoji: str = Field(max_length=16, json_schema_extra={"enum": list(ALLOWED_REACTIONS)})


class StageOffer(RequestBody):
    error_codes: ClassVar[dict[str, str]] = {"type": "bad_sdp", "sdp": "bad_sdp"}

    type: Literal["offer"]
    sdp: str = Field(min_length=1, pattern=r"\S")


class ProofOfWork(RequestBody):
    challenge: str = Field(max_length=MAX_TOKEN_LENGTH)
    solution: str = Field(max_length=MAX_TOKEN_LENGTH)


class JoinRequest(RequestBody):
    """Optional: the queue token to poll the line, a proof of work in attack mode, or
    the ticket of a stream that dropped (its node died): honoured on any node without
    a second wait in line."""

    error_codes: ClassVar[dict[str, str]] = {"pow": "invalid_pow"}

    token: str | None = Field(default=None, max_length=MAX_TOKEN_LENGTH)
    ticket: str | None = Field(default=None, max_length=MAX_TOKEN_LENGTH)
    pow: ProofOfWork | None = None


class AttackModeChange(RequestBody):
    mode: Literal["on", "off", "auto"]


class QueryParameters(RequestBody):
    """Base of query strings: every value arrives as text, so "10" may be 10."""

    model_config = ConfigDict(strict=False)


class ListingQuery(QueryParameters):
    """`GET /api/spaces` query: one page size, an offset for each list."""

    limit: int = Field(default=50, ge=1, le=100, description="Spaces per list")
    live_offset: int = Field(default=0, ge=0, le=MAX_LISTING_OFFSET)
    upcoming_offset: int = Field(default=0, ge=0, le=MAX_LISTING_OFFSET)


# -- responses -----------------------------------------------------------------------


class ErrorDetail(ResponseBody):
    code: str
    message: str


class ErrorBody(ResponseBody):
    """Every refusal: `{"error": {"code", "message"}}` (some add fields, e.g. retry_after_s)."""

    error: ErrorDetail


class UserOut(ResponseBody):
    id: str
    username: str


class TokenOut(ResponseBody):
    token: str


class SessionOut(ResponseBody):
    user: UserOut


class StageSeat(ResponseBody):
    user: UserOut
    role: Literal["host", "cohost", "speaker"]
    muted: bool
    speaking: bool = False
    connected: bool = False


class Audience(ResponseBody):
    """Who listens, as every page shows it: signed-in listeners (at most 24, not those
    on stage) and how many others (anonymous, HLS, or past the 24)."""

    people: list[UserOut]
    others: int


class Snapshot(ResponseBody):
    """Everything a listener's page shows; served from memory (ETag, max-age=1)."""

    id: str
    title: str
    state: SpaceState
    host: UserOut
    stage: list[StageSeat]
    listeners: int
    audience: Audience | None = None
    """Live: signed-in listeners' names and the count of the others (none when not live)."""
    peak_listeners: int = 0
    """The most listeners at once (live stream and HLS); kept after the end."""
    reactions: dict[str, int]
    scheduled_for: str | None
    started_at: str | None
    ended_at: str | None
    record: bool = False
    speak_policy: SpeakPolicy = SpeakPolicy.EVERYONE
    recording_url: str | None = None
    page_url: str | None = None
    captions: bool = False
    """Captions are being made (live) or kept with the replay: GET .../captions."""
    captions_requested: bool = False
    """The space asked for captions when it was created (kept across restarts)."""
    captions_withheld: Literal["node_limit", "no_captioner"] | None = None
    """Why a space that asked for captions is live without them: the node running it
    was at its limit of captioned spaces, or runs no captioner."""
    created_at: str | None = None
    description: str = ""
    pinned_url: str | None = None
    """A link the host pinned for listeners (http or https)."""
    topics: list[str] = []


class SpaceListing(ResponseBody):
    """Live spaces (newest start first) and upcoming ones (soonest first), each paged;
    `next_*_offset` is where the next page starts, null on the last one."""

    live: list[Snapshot]
    upcoming: list[Snapshot]
    next_live_offset: int | None = None
    next_upcoming_offset: int | None = None


class MyStatus(ResponseBody):
    role: Role
    muted: bool
    requested: bool
    invited: bool
    removed: bool


class SpeakRequests(ResponseBody):
    requests: list[UserOut]


class Requested(ResponseBody):
    requested: bool


class Invited(ResponseBody):
    invited: UserOut


class Accepted(ResponseBody):
    accepted: bool


class AllowedReactions(ResponseBody):
    allowed: list[str]


class StageAnswer(ResponseBody):
    type: Literal["answer"]
    sdp: str


class Waiting(ResponseBody):
    position: int
    eta_s: float
    retry_after_s: float
    token: str


class JoinAnswer(ResponseBody):
    """Either a ticket with where to use it, or a place in line (`wait`)."""

    ticket: str | None = None
    live_url: str | None = None
    hls_url: str | None = None
    hls_opus_url: str | None = None
    """The Opus rendition of the same program (`audio/mp4; codecs="opus"`), when enabled:
    fewer bytes for the same speech quality; players that take Opus prefer it."""
    expires_at: float | None = None
    wait: Waiting | None = None


class Health(ResponseBody):
    ok: bool


class Stats(ResponseBody):
    """The node's vital signs (see docs/api.md); an open object that grows."""


class AttackModeState(ResponseBody):
    attack_mode: bool
    forced: bool | None


def error_code(model: type[RequestBody], field: str) -> str:
    return model.error_codes.get(field, f"invalid_{field}")
