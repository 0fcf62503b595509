"""Page routes. Templates are static shells: the JS reads the space id from
the path and everything else from the API, so pages are cacheable and a flash
crowd on a page costs a file from memory."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).parent
PAGE_CACHE = "public, max-age=60"


@cache
def _template(name: str) -> bytes:
    return (WEB_DIR / "templates" / name).read_bytes()


def _page(name: str):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        return Response(
            _template(name), media_type="text/html", headers={"cache-control": PAGE_CACHE}
        )

    endpoint.__name__ = name.removesuffix(".html")
    return endpoint


routes = [
    Route("/", _page("home.html"), methods=["GET", "HEAD"]),
    Route("/s/{space_id}", _page("listen.html"), methods=["GET", "HEAD"]),
    Route("/s/{space_id}/studio", _page("studio.html"), methods=["GET", "HEAD"]),
    Route("/s/{space_id}/replay", _page("replay.html"), methods=["GET", "HEAD"]),
    Mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static"),
]
