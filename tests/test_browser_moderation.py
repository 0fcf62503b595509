"""A listener reports a space from the listening page, in a real browser, and the report
reaches the moderators' queue; the dialog passes axe-core and the CSP on both sizes."""

from __future__ import annotations

import httpx
import pytest

from browser import chromium_available, collect_csp_violations
from conftest import RunningServer
from test_browser_room import look

ADMIN_TOKEN = "operator-secret-" + "b" * 32

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
    pytest.mark.server_env(TOWNHALL_ADMIN_TOKEN=ADMIN_TOKEN),
]


def _live_space(server: RunningServer, host: str) -> str:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        credentials = {"username": host, "password": "correct horse"}
        assert http.post("/api/users", json=credentials).status_code == 201
        token = http.post("/api/tokens", json=credentials).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        space = http.post("/api/spaces", json={"title": "Reported"}, headers=auth).json()
        assert http.post(f"/api/spaces/{space['id']}/start", headers=auth).status_code == 200
        return str(space["id"])


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_listener_reports_the_space_and_a_moderator_sees_it(
    new_page, browser_server: RunningServer, size: str
) -> None:
    space_id = _live_space(browser_server, f"rep_host_{size}")
    listener = new_page(size)
    csp = collect_csp_violations(listener)
    listener.goto(f"{browser_server.url}/s/{space_id}")
    listener.wait_for_selector("#play:enabled")
    listener.click("#report")
    listener.wait_for_selector("#report-form select option[value=harassment]", state="attached")
    label = listener.inner_text("#report-form option[value=harassment]")
    assert label == "Harassment or bullying"
    look(listener, f"listen-report-{size}", csp)
    listener.select_option("#report-form select[name=reason]", "harassment")
    listener.fill("#report-form textarea[name=details]", "The host insults callers.")
    listener.click("#report-form button[type=submit]")
    listener.wait_for_selector("#player-status:has-text('A moderator will review')")
    assert not listener.is_visible("#report-form")
    with httpx.Client(base_url=browser_server.url, timeout=10) as http:
        queue = http.get(
            "/api/moderation/reports", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    [report] = queue.json()["reports"]
    assert report["subject"] == "space" and report["subject_id"] == space_id
    assert report["reason"] == "harassment"
    assert report["details"] == "The host insults callers."
    assert report["reporter_id"] is None
