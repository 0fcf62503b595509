"""The pages' security headers, and templates that a strict CSP lets run.

A policy without 'unsafe-inline' is only worth having if the pages work under
it: the templates hold no inline script, event-handler attribute or style
attribute (the browser tests also fail on any CSP violation in the console).
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from townhall.config import load_settings
from townhall.web.pages import WEB_DIR
from townhall.web.security import content_security_policy

PAGES = ["/", "/s/some-space", "/s/some-space/studio", "/s/some-space/replay"]


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_sends_the_security_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert not any("unsafe" in value for values in policy.values() for value in values)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert response.headers["x-frame-options"] == "DENY"


async def test_static_files_are_not_sniffed(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/listen.js")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "javascript" in response.headers["content-type"]


def test_stream_workers_and_a_public_url_are_allowed_origins() -> None:
    policy = directives(
        content_security_policy(["http://127.0.0.1:8081", "https://cdn.example/x", "", "/rel"])
    )
    assert policy["connect-src"] == ["'self'", "http://127.0.0.1:8081", "https://cdn.example"]
    assert policy["media-src"] == [
        "'self'",
        "blob:",
        "http://127.0.0.1:8081",
        "https://cdn.example",
    ]


async def test_a_node_with_stream_workers_allows_its_stream_port(tmp_path: Path) -> None:
    from townhall.app import create_app

    settings = load_settings(
        {"TOWNHALL_EDGE_STREAM_WORKERS": "1", "TOWNHALL_EDGE_STREAM_PORT": "9777"},
        data_dir=tmp_path,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9776") as http:
        response = await http.get("/")
    assert (
        "http://127.0.0.1:9777"
        in directives(response.headers["content-security-policy"])["connect-src"]
    )


class InlineFinder(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names:
            self.blocked.append("inline <script>")
        if tag == "style":
            self.blocked.append("<style> element")
        for name in names:
            if name.startswith("on") or name == "style":
                self.blocked.append(f"{name}= on <{tag}>")


@pytest.mark.parametrize("template", sorted((WEB_DIR / "templates").glob("*.html")), ids=str)
def test_templates_hold_nothing_inline(template: Path) -> None:
    finder = InlineFinder()
    finder.feed(template.read_text())
    assert finder.blocked == []


PAGES = ["/", "/s/abcdefghijkm", "/s/abcdefghijkm/studio", "/s/abcdefghijkm/replay", "/c/x"]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_has_the_shared_head_once(client: httpx.AsyncClient, path: str) -> None:
    page = (await client.get(path)).text
    head = page[: page.index("</head>")]
    for line in (WEB_DIR / "templates" / "_head.html").read_text().splitlines():
        assert head.count(line.strip()) == 1, f"{path}: {line.strip()!r}"
    assert head.index('<meta charset="utf-8">') < 200, "the charset comes first"
    assert "shared head" not in page


@pytest.mark.parametrize("template", sorted((WEB_DIR / "templates").glob("[!_]*.html")), ids=str)
def test_no_template_repeats_the_shared_head(template: Path) -> None:
    text = template.read_text()
    assert "<meta charset" not in text and "/static/style.css" not in text, template.name
