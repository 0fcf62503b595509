"""One typed settings tree with named defaults, read once at start-up.

Every limit lives here with the reason for its default; "0 disables" is said
where it applies. Environment variables (TOWNHALL_*) override defaults and
command-line flags override both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
ADMIN_TOKEN_MIN_CHARS = 32
"""An operator token shorter than this could be guessed; the server will not start with one."""


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int = 64 * 1024
    """JSON bodies are small; an SDP offer is the largest (~10 KB)."""
    header_timeout_s: float = 10.0
    """A request's headers must arrive within this (slowloris sends them a byte at a time)."""
    body_timeout_s: float = 20.0
    """A request's body must arrive within this after its headers."""
    max_header_bytes: int = 16 * 1024
    """A request line and headers larger than this are refused with 431 before they are
    held: a browser's head with cookies is 1-4 KiB (nginx allows 8 KiB per line)."""
    trusted_proxies: tuple[str, ...] = ()
    """CIDR networks of the proxies in front of this server (nginx, a load balancer):
    from them, the client's address and scheme are read from `forwarded_header`
    (townhall.forwarded). Empty: nobody's forwarding headers are believed."""
    forwarded_header: str = "x-forwarded-for"
    """Which header the trusted proxies set: "x-forwarded-for" (with X-Forwarded-Proto)
    or "forwarded" (RFC 7239). Only that one is read: a proxy passes the other through
    from the client untouched."""
    max_connections_per_address: int = 32
    """Open connections one client address may hold in normal mode (a household or an
    office behind one NAT fits); 0 disables. Attack mode applies its own, tighter cap
    (see townhall.admission.attack_mode). Trusted proxies are exempt: they carry many
    clients, and cap connections per client themselves (deploy/nginx)."""


@dataclass(frozen=True)
class AudioSettings:
    bitrate: int = 48_000
    """AAC program bitrate: speech at 48 kbps is clear and cheap to fan out."""
    live_chunk_ms: int = 200
    """Encoded audio batched per write to every listener: latency against syscalls.
    Measured (bench/, 48 kbps): 100 ms costs 5.4 % of a core per 1,000 listeners,
    200 ms 4.3 %, 500 ms 1.6 % (Icecast 3.4 % at 0.5 s). The page plays ~0.3 s behind
    the newest chunk, so 200 ms keeps mouth-to-ear near half a second; an event that
    needs more listeners per core than latency sets 500."""
    live_burst_ms: int = 1_000
    """Audio sent at once to a new live listener so playback starts immediately."""
    live_max_lag_ms: int = 8_000
    """A live listener whose unsent backlog exceeds this is cut (and counted), never buffered."""
    fragment_ms: int = 200
    """CMAF fragment length: the LL-HLS part (published the moment it is complete) and
    the unit of crash loss in recordings. 200 ms (9-10 AAC frames) is what LL-HLS players
    expect of a part; each costs a ~150-byte moof header (~6 kbps at 48 kbps)."""
    segment_ms: int = 1_000
    """HLS segment target (the issue caps it at 2 s); a whole number of fragments."""
    hls_window_segments: int = 12
    """Segments listed in the live playlist and kept in memory."""
    clip_window_s: float = 30.0
    """Program audio kept in memory per live space for clips: the longest live clip
    (X: 30 s), ~200 KB at 48 kbps."""
    opus_bitrate: int = 32_000
    """The Opus HLS rendition (townhall.audience.opus_rendition); 0 disables it. At 32 kbps
    its speech scores above AAC at 48 kbps (bench/codec_quality.py)."""
    hls_listener_window_s: float = 10.0
    """An HLS listener is a client that polled the playlist within this (see
    townhall.audience.pollers): players poll every segment target or faster."""


@dataclass(frozen=True)
class StageSettings:
    ice_host_addresses: tuple[str, ...] = ()
    """Addresses the server offers as ICE host candidates; empty means the loopback
    address when the server listens on one, else every non-loopback interface (aioice's
    own choice, or loopback where there is none). See townhall.stage.ice."""
    connect_timeout_s: float = 10.0
    """A speaker's peer that has not connected by then is closed and the failure logged
    with what to do: ICE that cannot succeed would otherwise leave it 'connecting' for
    good. A browser on the same network connects in well under a second."""
    speaking_threshold_dbfs: float = -45.0
    """Level above which a speaker counts as speaking for the indicator."""


@dataclass(frozen=True)
class CaptionSettings:
    """Live captions (townhall.captions): one recognizer process per captioned space."""

    enabled: bool = True
    """Whether this node runs a captioner at all; off, no space has captions."""
    model: str = ""
    """A model directory (`--captions-model`): pocketsphinx, Vosk or faster-whisper,
    told by its files (townhall.captions.models); empty means the English model the
    pocketsphinx wheel ships. Nothing is downloaded at run time."""
    max_spaces: int = 2
    """Captioned live spaces at once on this node (each costs a recognizer process, ~20 %
    of a core on the bench: see bench/README.md); past it spaces go live without
    captions. 0 disables captions like `enabled = false`."""
    queue_seconds: float = 10.0
    """Program audio held for a recognizer that is behind (or still loading its model)
    before audio is dropped, and counted, instead."""
    max_cues: int = 2_000
    """Cues kept in memory per live space for the API (~2 h of speech); the WebVTT file
    written beside the recording at the end has those that were kept."""

    @property
    def active(self) -> bool:
        return self.enabled and self.max_spaces > 0


@dataclass(frozen=True)
class EdgeSettings:
    """Stream workers: extra processes that serve only the live stream.

    One process may hold about 20,000 open files here (a hard limit), and one Python
    process uses one core; workers on a shared port (SO_REUSEPORT) let one node hold
    more listeners than either allows. Each worker relays a space's program from the
    origin once and fans it out itself, so the origin sends one stream per worker.
    """

    stream_workers: int = 0
    """Worker processes; 0 disables them and the main process serves /live itself."""
    stream_port: int = 0
    """Port the workers share; 0 means the main port + 1."""
    stream_public_url: str = ""
    """Base URL of the stream port handed to clients (behind a proxy, say); empty means
    the request's host name with the stream port."""
    header_timeout_s: float = 10.0
    """A stream connection that has not sent its whole request head by then is cut
    (slowloris); a real player sends it in one packet."""
    max_header_bytes: int = 8 * 1024
    """Request head cap on the stream port; a ticket URL is well under 1 KiB."""
    relay_grace_s: float = 10.0
    """How long a worker keeps a space's relay open after its last listener leaves, so
    a listener who reconnects finds the stream (and its burst) still flowing."""
    relay_connect_timeout_s: float = 5.0
    """A relay that gets no answer head from the origin by then fails its listeners (502)."""
    report_interval_s: float = 1.0
    """Workers report their listener counts to the origin this often."""
    restart_backoff_s: float = 1.0
    """The supervisor restarts a crashed worker at most this often per worker slot."""

    def resolved_stream_port(self, main_port: int) -> int:
        return self.stream_port or main_port + 1


@dataclass(frozen=True)
class WriteLimits:
    """Per-account and per-address allowances for the writes a spammer would repeat
    (service/write_limits.py). Each is "N per window": a burst of N, refilled over the
    window; 0 disables that limit."""

    sign_ups_per_address_per_hour: int = 20
    sign_ins_per_address_per_minute: int = 30
    """Token and session requests from one address (password guessing, spread out)."""
    sign_ins_per_account_per_minute: int = 10
    """Token and session requests naming one username, from anywhere."""
    spaces_per_account_per_hour: int = 30
    spaces_per_address_per_hour: int = 60
    reactions_per_address_per_minute: int = 120
    reactions_per_account_per_minute: int = 60
    open_spaces_per_host: int = 20
    """Live plus scheduled spaces one host may have at once, so one account cannot fill
    the listing."""


@dataclass(frozen=True)
class ClipSettings:
    """Clips of live spaces and recordings (service/clips.py)."""

    ttl_days: float = 30.0
    """A clip's audio and page are deleted this long after it was made."""
    max_recording_s: float = 300.0
    """The longest range a host may cut from a recording."""
    per_address_per_minute: int = 6
    """Clips one address may make per minute (a burst of N, refilled over the minute)."""
    per_account_per_minute: int = 6
    max_in_flight: int = 2
    """Cuts running at once (each a thread for a few milliseconds)."""
    max_waiting: int = 32
    """Cuts that may wait for a slot; past it a clip request gets 503 + Retry-After."""
    sweep_interval_s: float = 600.0
    """How often expired clips are deleted."""


@dataclass(frozen=True)
class AdmissionSettings:
    """The node's capacity and its door policy (see townhall.admission)."""

    max_listeners: int = 18_000
    """Concurrent live-stream listeners per process that serves streams (the main one, or
    each stream worker): below the 20k open-file limit of a process, with room for the
    control plane. 0 disables."""
    max_admissions_per_s: float = 2_000.0
    """New listeners admitted per second per space before the waiting room forms."""
    max_loop_lag_ms: float = 50.0
    """Event-loop lag past which joins queue (and past 3x, are shed with 503 + Retry-After)."""
    priority_share: float = 0.5
    """Share of admissions the signed-in lane gets while both lanes wait."""
    attack_mode: str = "auto"
    """"auto" switches on past thresholds; "on"/"off" is the operator's override."""
    pow_bits: int = 16
    """Proof-of-work difficulty for anonymous joins in attack mode (~0.5 s in a browser)."""
    per_address_rate: float = 20.0
    """Joins and writes per second one address may make in normal mode (burst 5x); 0 disables
    the per-address and per-prefix limits, e.g. for a rehearsal from one machine."""


@dataclass(frozen=True)
class NotifySettings:
    """Follows, notifications and webhooks (TOWNHALL_NOTIFY_*; service/notifier.py)."""

    pacing: bool = True
    """"X is live" goes out in waves sized by the admission capacity; off: all at once."""
    interval_s: float = 1.0
    """One wave per interval."""
    arrival_share: float = 1.0
    """Share of the notified expected to come at once (1.0 never overfills)."""
    min_wave: int = 1
    max_wave: int = 1_000
    """Recipients per wave at most: one store page, one INSERT, one webhook batch."""
    max_following: int = 5_000
    max_event_streams: int = 10_000
    max_event_streams_per_user: int = 4
    feed_retention_days: int = 30
    """Feed entries older than this are deleted; 0 keeps them."""
    webhook_url: str = ""
    """Signed POSTs of every notification wave go here; empty disables webhooks."""
    webhook_secret: str = ""
    """HMAC-SHA256 key of the Townhall-Signature header."""
    webhook_attempts: int = 5
    webhook_first_backoff_s: float = 1.0
    """Wait before the second attempt, doubled after each failure."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./var")
    public_url: str = ""
    """Base URL of this node for links handed to clients; empty means relative links
    here, and `http://HOST:PORT` where other nodes point clients to this one."""
    state: str = "memory"
    """Shared live state: "memory" (one node) or "redis://host:port/db" (many nodes)."""
    role: str = "all"
    """What this node does (townhall.nodes.roles): "origin" holds stages, "edge" relays
    programs to listeners, "all" (the single node) both. Env TOWNHALL_ROLE, flag --role."""
    secret: str = ""
    """HMAC key for tickets; empty means generate one and keep it in data_dir."""
    max_schedule_days: int = 14
    snapshot_tick_s: float = 1.0
    """A space's snapshot is rebuilt at most this often for count changes."""
    ticket_ttl_s: int = 300
    token_ttl_days: int = 90
    session_ttl_days: int = 30
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65_536
    argon2_parallelism: int = 1
    """Lanes (threads) per hash: 1 keeps one hash on one core (service/passwords.py)."""
    argon2_max_in_flight: int = 1
    """Hashes computed at once, so password guessing can take at most this many cores."""
    argon2_max_waiting: int = 32
    """Hashes that may wait for a slot; past it sign-ins get 503 + Retry-After."""
    http: HttpLimits = field(default_factory=HttpLimits)
    limits: WriteLimits = field(default_factory=WriteLimits)
    audio: AudioSettings = field(default_factory=AudioSettings)
    stage: StageSettings = field(default_factory=StageSettings)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    admin_token: str = ""
    """Bearer token for operator endpoints (attack mode switch), at least
    ADMIN_TOKEN_MIN_CHARS long (`python -c 'import secrets; print(secrets.token_hex(32))'`);
    empty disables them."""
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    captions: CaptionSettings = field(default_factory=CaptionSettings)
    clips: ClipSettings = field(default_factory=ClipSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    shared_recordings: str = ""
    """A recordings directory every origin shares (flag --shared-recordings): an origin
    that takes a space over after a crash writes its part beside the crashed one's, and
    the end joins them (service/recordings.py). Empty: DATA_DIR/recordings."""
    store: str = ""
    """Durable store URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB (env
    TOWNHALL_STORE, flag --store); empty means SQLite at `database_path`."""

    @property
    def node_url(self) -> str:
        """Where clients reach this node: `public_url`, else `http://HOST:PORT`."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "townhall.sqlite3"

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.database_path}"

    @property
    def recordings_dir(self) -> Path:
        if self.shared_recordings:
            return Path(self.shared_recordings)
        return self.data_dir / "recordings"

    @property
    def clips_dir(self) -> Path:
        return self.data_dir / "clips"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _coerce(value: str, like: Any) -> Any:
    if isinstance(like, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    if isinstance(like, Path):
        return Path(value)
    if isinstance(like, tuple):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _from_env(obj: Any, prefix: str, env: dict[str, str]) -> Any:
    changes: dict[str, Any] = {}
    for f in fields(obj):
        current = getattr(obj, f.name)
        key = f"{prefix}{f.name.upper()}"
        if hasattr(current, "__dataclass_fields__"):
            changes[f.name] = _from_env(current, f"{key}_", env)
        elif key in env:
            changes[f.name] = _coerce(env[key], current)
    return replace(obj, **changes)


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then TOWNHALL_* variables (TOWNHALL_AUDIO_BITRATE=...), then overrides."""
    settings = _from_env(Settings(), "TOWNHALL_", dict(os.environ if env is None else env))
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
