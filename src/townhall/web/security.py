"""The headers that keep the pages from being turned against the people using them.

A Content-Security-Policy without 'unsafe-inline' means an injected <script>
or on*= attribute does not run: every script is a file under /static, styles
too. The live stream and the HLS playlist may be on another origin (stream
workers on their own port, a public URL in front), so those origins are
allowed to be fetched and played, nothing else. frame-ancestors stops
click-jacking (someone framing the studio's "End space" button); nosniff stops a
browser from running an uploaded or mislabelled file as script; the referrer
policy keeps listening-page paths out of other sites' logs.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["NOSNIFF", "SecurityHeaders", "content_security_policy", "page_security_headers"]

NOSNIFF = ("x-content-type-options", "nosniff")
REFERRER_POLICY = ("referrer-policy", "strict-origin-when-cross-origin")


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None  # relative: same origin
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(media_urls: Iterable[str] = ()) -> str:
    """The policy for every page; `media_urls` are bases the audio may come from."""
    extra = sorted({o for o in (_origin(u) for u in media_urls) if o})
    media = " ".join(["'self'", "blob:", *extra])
    connect = " ".join(["'self'", *extra])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            f"media-src {media}",
            f"connect-src {connect}",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def page_security_headers(media_urls: Iterable[str] = ()) -> dict[str, str]:
    return {
        "content-security-policy": content_security_policy(media_urls),
        NOSNIFF[0]: NOSNIFF[1],
        REFERRER_POLICY[0]: REFERRER_POLICY[1],
        "x-frame-options": "DENY",  # frame-ancestors for browsers that predate it
    }


class SecurityHeaders:
    """ASGI wrapper that adds fixed headers to every response of the wrapped app
    (the static files: scripts must never be sniffed into something else)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self._headers = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self._headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
