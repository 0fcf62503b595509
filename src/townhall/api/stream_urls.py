"""Where a join answer sends the listener: pure functions, shared by the API process
and the stream workers (townhall.edge.joins), so both hand out the very same URLs.
No framework here: a worker imports it on its hot path's behalf."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from townhall.audience.opus_rendition import OPUS_PLAYLIST_URI
from townhall.config import EdgeSettings


def add_stream_urls(
    answer: dict[str, Any],
    space_id: str,
    live_url_base: str,
    hls_url_base: str,
    opus: bool,
) -> None:
    """A ticket comes with where to use it: the live stream (``live_url_base``: here, the
    stream port, or the node that holds the stage) and the HLS playlists
    (``hls_url_base``), which need no ticket. Keys are added in this order, after the
    ticket's: clients and tests see one shape whoever answered."""
    if "ticket" in answer:
        answer["live_url"] = f"{live_url_base}/live/{space_id}.aac?ticket={quote(answer['ticket'])}"
        hls_base = hls_url_base.rstrip("/")
        answer["hls_url"] = f"{hls_base}/hls/{space_id}/index.m3u8"
        if opus:
            answer["hls_opus_url"] = f"{hls_base}/hls/{space_id}/{OPUS_PLAYLIST_URI}"


def live_url_base(
    edge: EdgeSettings,
    stream_port: int,
    public_url: str,
    host: str,
    request_scheme: str,
    request_hostname: str | None,
) -> str:
    """Where the live stream is served: here (relative links, as before), or with stream
    workers on, the stream port: its configured public URL, else the public URL's or
    the request's host name with the stream port (absolute: it is another origin)."""
    if not edge.stream_workers:
        return public_url.rstrip("/")
    if edge.stream_public_url:
        return edge.stream_public_url.rstrip("/")
    public = urlsplit(public_url) if public_url else None
    scheme = public.scheme if public and public.scheme else request_scheme
    hostname = (public.hostname if public else None) or request_hostname or host
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{scheme}://{hostname}:{stream_port}"
