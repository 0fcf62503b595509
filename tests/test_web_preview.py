"""Link previews: a shared /s/{id} link shows the title, host and state to crawlers
that run no script (Open Graph and Twitter card tags written on the server)."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx

from http_helpers import live_space, sign_up


class MetaReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta" and (found.get("property") or found.get("name")):
            self.meta[str(found.get("property") or found.get("name"))] = str(found["content"])
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)


def read(html: str) -> MetaReader:
    reader = MetaReader()
    reader.feed(html)
    return reader


async def test_a_ready_space_shows_title_host_and_state(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "preview_host")
    title = 'Q&A: "<script>alert(1)</script>"'
    created = await client.post("/api/spaces", json={"title": title}, headers=host.headers)
    page = await client.get(f"/s/{created.json()['id']}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    tags = read(page.text)
    assert tags.meta["og:title"] == title
    assert tags.meta["twitter:title"] == title
    assert tags.meta["twitter:card"] == "summary"
    assert "Ready to go live" in tags.meta["og:description"]
    assert "preview_host" in tags.meta["og:description"]
    assert tags.meta["og:url"].endswith(f"/s/{created.json()['id']}")
    assert tags.titles == [f"{title} — townhall"]


async def test_a_live_space_says_live(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "preview_live")
    space = await live_space(client, host, title="Morning show")
    tags = read((await client.get(f"/s/{space['id']}")).text)
    assert tags.meta["og:description"].startswith("Live now · hosted by preview_live")


async def test_an_unknown_space_gets_the_plain_page(client: httpx.AsyncClient) -> None:
    page = await client.get("/s/no-such-space")
    assert page.status_code == 200
    tags = read(page.text)
    assert "og:title" not in tags.meta
    assert tags.titles == ["townhall"]
