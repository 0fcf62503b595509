"""Link previews: Open Graph and Twitter card tags for a space's listening page.

A link shared in a chat or a post is shown by a crawler that runs no script,
so the static page shell gets the space's title, host and state written into
its <head> on the server. Pure text in, text out; the page route supplies the
snapshot.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["PLACEHOLDER", "preview_tags", "with_preview"]

PLACEHOLDER = b"<!-- link preview -->"
"""Where the listening page's template takes the tags."""
SITE_NAME = "townhall"

_STATE_TEXT = {"live": "Live now", "ended": "Ended"}


def state_text(data: dict[str, Any]) -> str:
    state = data.get("state")
    if state == "scheduled":
        return "Scheduled" if data.get("scheduled_for") else "Ready to go live"
    return _STATE_TEXT.get(str(state), str(state))


def preview_tags(data: dict[str, Any], page_url: str) -> str:
    """The <title> and meta tags for a snapshot's space (every value escaped)."""
    title = str(data.get("title") or "A space")
    host = str((data.get("host") or {}).get("username") or "someone")
    description = f"{state_text(data)} · hosted by {host} · audio space on {SITE_NAME}"
    if data.get("state") == "live":
        listeners = int(data.get("listeners") or 0)
        description += f" · {listeners} listening"
    properties = {
        "og:type": "website",
        "og:site_name": SITE_NAME,
        "og:title": title,
        "og:description": description,
        "og:url": page_url,
    }
    names = {"twitter:card": "summary", "twitter:title": title, "twitter:description": description}
    lines = [f"<title>{escape(title)} — {SITE_NAME}</title>"]
    lines += [
        f'<meta property="{key}" content="{escape(value)}">' for key, value in properties.items()
    ]
    lines += [f'<meta name="{key}" content="{escape(value)}">' for key, value in names.items()]
    lines.append(f'<meta name="description" content="{escape(description)}">')
    return "\n  ".join(lines)


def with_preview(template: bytes, data: dict[str, Any], page_url: str) -> bytes:
    """The template with the tags in place of PLACEHOLDER (and its own <title> dropped)."""
    page = template.replace(b"<title>townhall</title>", b"", 1)
    return page.replace(PLACEHOLDER, preview_tags(data, page_url).encode(), 1)
