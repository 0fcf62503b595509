"""A follower's home page hears "live now" as it happens and opens the space (real
Chromium against `townhall serve`; the notification arrives over the page's event
stream, nothing is polled)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from browser import (
    BROWSER_TEST,
    PASSWORD,
    axe_violations,
    collect_csp_violations,
    create_space,
    screenshot,
    sign_up,
)

pytestmark = [*BROWSER_TEST]



@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_a_follower_sees_live_now_and_opens_the_space(
    new_page, browser_server, viewport: str
) -> None:
    page = new_page(viewport)
    csp = collect_csp_violations(page)
    sign_up(page, browser_server.url, "follower")
    with httpx.Client(base_url=browser_server.url, timeout=10) as http:
        credentials = {"username": "famous", "password": PASSWORD}
        assert http.post("/api/users", json=credentials).status_code == 201
        token = http.post("/api/tokens", json=credentials).json()["token"]
        host = {"authorization": f"Bearer {token}"}
        page_session = {c["name"]: c["value"] for c in page.context.cookies()}
        follow = http.post(
            "/api/users/famous/follow",
            cookies=page_session,
            headers={"content-type": "application/json", "origin": browser_server.url},
        )
        assert follow.status_code == 200, follow.text
        space = http.post("/api/spaces", json={"title": "Breaking news"}, headers=host).json()
        page.wait_for_function("() => document.querySelector('#notices').hidden === true")
        assert http.post(f"/api/spaces/{space['id']}/start", headers=host).status_code == 200

    notice = page.wait_for_selector("#notices .notice[data-kind=space_live]")
    assert "famous is live now: Breaking news" in notice.inner_text()
    assert not axe_violations(page)
    screenshot(page, f"follows-live-now-{viewport}")
    notice.query_selector("a").click()
    page.wait_for_url(f"**/s/{space['id']}")
    page.wait_for_selector("#play:enabled")
    assert not csp


def test_the_host_sees_how_many_followers_were_told(new_page, browser_server) -> None:
    page = new_page()
    sign_up(page, browser_server.url, "famous")
    with httpx.Client(base_url=browser_server.url, timeout=10) as http:
        for name in ("fan_one", "fan_two"):
            credentials = {"username": name, "password": PASSWORD}
            http.post("/api/users", json=credentials)
            token = http.post("/api/tokens", json=credentials).json()["token"]
            followed = http.post(
                "/api/users/famous/follow", headers={"authorization": f"Bearer {token}"}
            )
            assert followed.status_code == 200
    create_space(page, "Big news")
    page.wait_for_function(
        "() => document.querySelector('#notified').textContent.includes('2 followers and 0')"
    )
    page.click("#start")
    page.wait_for_function(
        "() => document.querySelector('#notified').textContent.startsWith('Told 2 of 2')"
    )
    assert not axe_violations(page)


def test_a_listener_follows_the_host_and_asks_for_a_reminder(new_page, browser_server) -> None:
    page = new_page("phone")
    csp = collect_csp_violations(page)
    sign_up(page, browser_server.url, "listener")
    with httpx.Client(base_url=browser_server.url, timeout=10) as http:
        credentials = {"username": "famous", "password": PASSWORD}
        http.post("/api/users", json=credentials)
        token = http.post("/api/tokens", json=credentials).json()["token"]
        host = {"authorization": f"Bearer {token}"}
        when = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        created = http.post(
            "/api/spaces", json={"title": "Later", "scheduled_for": when}, headers=host
        )
        space_id = created.json()["id"]
        page.goto(f"{browser_server.url}/s/{space_id}")
        follow = page.wait_for_selector("#follow-bar button[data-action=follow]")
        assert follow.inner_text() == "Follow famous"
        follow.click()
        page.wait_for_selector("#follow-bar button[aria-pressed=true] >> text=Following")
        page.click("#follow-bar button[data-action=remind]")
        page.wait_for_selector("#follow-bar button >> text=Reminder set")
        assert not axe_violations(page)
        screenshot(page, "follows-listen-buttons-phone")
        progress = http.get(f"/api/spaces/{space_id}/notified", headers=host).json()
        assert progress["followers"] == 1 and progress["reminders"] == 1
    assert not csp
