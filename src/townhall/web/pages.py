"""Page routes. Templates are static shells: the JS reads the space id from
the path and everything else from the API, so pages are cacheable and a flash
crowd on a page costs a file from memory. Every page carries the security
headers of townhall.web.security."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from html import escape
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from townhall.api.listening import live_base
from townhall.config import Settings
from townhall.domain.errors import DomainError
from townhall.service.spaces import Spaces
from townhall.web.preview import with_preview
from townhall.web.security import NOSNIFF, SecurityHeaders, page_security_headers

WEB_DIR = Path(__file__).parent
PAGE_CACHE = "public, max-age=60"

MediaUrls = Callable[[Request], list[str]]
"""Where a page's audio may come from (other origins than the page's own)."""
ListenerApiBase = Callable[[Request], str]
"""Where the listen page asks the snapshot and the anonymous join ('': its own origin)."""
LISTENER_API = b"<!-- listener api -->"
"""Where the listen page takes its <meta name="townhall-listener-api"> (listenerapi.js)."""


SHARED_HEAD = b"  <!-- shared head: _head.html -->\n"
"""Where a template takes the <head> every page shares (charset, viewport, style sheet,
the modules every page loads): one file to change, not five."""


@cache
def _template(name: str) -> bytes:
    """A page as served: the template with the shared head put in (once, then cached)."""
    templates = WEB_DIR / "templates"
    page = (templates / name).read_bytes()
    if SHARED_HEAD not in page:
        raise ValueError(f"{name} does not take the shared head ({SHARED_HEAD!r})")
    return page.replace(SHARED_HEAD, (templates / "_head.html").read_bytes(), 1)


def _page(name: str, media_urls: MediaUrls):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        headers = {"cache-control": PAGE_CACHE, **page_security_headers(media_urls(request))}
        return Response(_template(name), media_type="text/html", headers=headers)

    endpoint.__name__ = name.removesuffix(".html")
    return endpoint


def _listen_page(  # type: ignore[no-untyped-def]
    media_urls: MediaUrls, spaces: Spaces, listener_api: ListenerApiBase
):
    """The listening page, with the space's link-preview tags (see preview.py) and the
    stream workers' base, if any, for its snapshot and join. The snapshot comes from
    memory (rebuilt at most once a second), so a crowd arriving on the page costs no
    database work; an unknown space gets the plain shell."""

    async def listen(request: Request) -> Response:
        headers = {"cache-control": PAGE_CACHE, **page_security_headers(media_urls(request))}
        page = _template("listen.html")
        base = listener_api(request)
        if base:
            meta = f'<meta name="townhall-listener-api" content="{escape(base)}">'
            page = page.replace(LISTENER_API, meta.encode(), 1)
        try:
            snapshot = await spaces.snapshot(request.path_params["space_id"])
        except DomainError:
            snapshot = None
        if snapshot is not None:
            page = with_preview(page, snapshot.data, str(request.url.replace(query="")))
        return Response(page, media_type="text/html", headers=headers)

    return listen


def media_urls_for(
    settings: Settings, node_urls: Callable[[], Iterable[str]] = tuple
) -> MediaUrls:
    """The live stream's base (stream workers may serve it from another port; live_base
    is the one place that decides it), the public URL (HLS links use it) and every node
    of the deployment (`node_urls`: a join may send the listener to any of them, and
    after a failover to another one than before)."""

    def media_urls(request: Request) -> list[str]:
        return [live_base(request, settings), settings.public_url, *node_urls()]

    return media_urls


def listener_api_for(settings: Settings) -> ListenerApiBase:
    """The stream workers' base (live_base: their port, or their public URL) when this
    node has them; else '' and the page asks its own origin's API, as before."""

    def base(request: Request) -> str:
        return live_base(request, settings) if settings.edge.stream_workers else ""

    return base


def page_routes(settings: Settings, spaces: Spaces) -> list[BaseRoute]:
    media_urls = media_urls_for(settings, spaces.node_urls)
    listener_api = listener_api_for(settings)
    static = StaticFiles(directory=WEB_DIR / "static")
    return [
        Route("/", _page("home.html", media_urls), methods=["GET", "HEAD"]),
        Route(
            "/s/{space_id}", _listen_page(media_urls, spaces, listener_api), methods=["GET", "HEAD"]
        ),
        Route("/s/{space_id}/studio", _page("studio.html", media_urls), methods=["GET", "HEAD"]),
        Route("/s/{space_id}/replay", _page("replay.html", media_urls), methods=["GET", "HEAD"]),
        Route("/c/{clip_id}", _page("clip.html", media_urls), methods=["GET", "HEAD"]),
        Route("/moderation", _page("moderation.html", media_urls), methods=["GET", "HEAD"]),
        Mount("/static", SecurityHeaders(static, dict([NOSNIFF])), name="static"),
    ]
