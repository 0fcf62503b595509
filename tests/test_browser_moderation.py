"""A listener reports a space from the listening page, in a real browser, and the report
reaches the moderators' queue; a moderator (or the operator) works it on the moderation
page; every page passes axe-core and the CSP on both sizes."""

from __future__ import annotations

import httpx
import pytest

from browser import BROWSER_TEST, PASSWORD, collect_csp_violations, page_factory
from conftest import RunningServer
from test_browser_room import look

ADMIN_TOKEN = "operator-secret-" + "b" * 32

pytestmark = [
    *BROWSER_TEST,
    pytest.mark.server_env(TOWNHALL_ADMIN_TOKEN=ADMIN_TOKEN),
]

OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UI_TIMEOUT_MS = 20_000


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


def _moderator_account(http: httpx.Client, name: str) -> None:
    """A user the operator made a moderator (signs in with PASSWORD)."""
    credentials = {"username": name, "password": PASSWORD}
    created = http.post("/api/users", json=credentials)
    assert created.status_code == 201, created.text
    granted = http.post(
        "/api/moderation/moderators", json={"user_id": created.json()["id"]}, headers=OPERATOR
    )
    assert granted.status_code == 201, granted.text


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_moderator_works_a_report_from_the_queue_to_the_audit_log(
    chromium, browser_server: RunningServer, size: str
) -> None:
    """Desktop: a moderator signed in; phone: the operator with the token. The report is
    read, the space ended with a statement of reasons, and the audit log shows the
    decision with its chain verified."""
    host = f"mod_host_{size}"
    space_id = _live_space(browser_server, host)
    with httpx.Client(base_url=browser_server.url, timeout=10) as http:
        report = {"space_id": space_id, "reason": "harassment", "details": "Insults every caller."}
        filed = http.post("/api/reports", json=report)
        assert filed.status_code == 201, filed.text
        report_id = filed.json()["id"]
        if size == "desktop":
            _moderator_account(http, "moderator_desktop")
    with page_factory(chromium, UI_TIMEOUT_MS) as new_page:
        page = new_page(size)
        csp = collect_csp_violations(page)
        if size == "desktop":
            page.goto(browser_server.url + "/")
            page.fill("#auth-form input[name=username]", "moderator_desktop")
            page.fill("#auth-form input[name=password]", PASSWORD)
            page.click("#auth-form button[value=signin]")
            page.wait_for_selector("#create-form", state="visible")
            page.goto(browser_server.url + "/moderation")
        else:
            page.goto(browser_server.url + "/moderation")
            page.wait_for_selector("#operator-form", state="visible")
            look(page, f"moderation-sign-in-{size}", csp)
            page.fill("#operator-form input[name=token]", ADMIN_TOKEN)
            page.click("#operator-form button[type=submit]")
        item = f"#reports li[data-report-id='{report_id}']"
        page.wait_for_selector(item)
        assert "Harassment or bullying" in page.inner_text(item)
        assert "Insults every caller." in page.inner_text(item)
        assert f"Reported hosted by {host}" in page.inner_text(item)
        page.wait_for_selector("#verify-result:has-text('Intact')")
        look(page, f"moderation-queue-{size}", csp)

        page.select_option(f"{item} select[name=decision]", f"end_space:{space_id}")
        assert page.input_value(f"{item} select[name=ground]") == "harassment"
        page.fill(f"{item} textarea[name=explanation]", "The host insulted callers repeatedly.")
        page.click(f"{item} button[type=submit]")
        page.wait_for_selector("#page-status:has-text('statement of reasons was sent')")
        page.wait_for_selector(item, state="detached")
        page.wait_for_selector("#queue-empty", state="visible")
        page.wait_for_selector("#audit-rows tr:has-text('end_space')")
        page.wait_for_selector("#verify-result:has-text('Intact')")
        assert "matches the head kept outside the log" in page.inner_text("#verify-result")
        look(page, f"moderation-decided-{size}", csp)

    with httpx.Client(base_url=browser_server.url, timeout=10) as http:
        assert http.get(f"/api/spaces/{space_id}").json()["state"] == "ended"
        credentials = {"username": host, "password": "correct horse"}
        token = http.post("/api/tokens", json=credentials).json()["token"]
        inbox = http.get("/api/me/statements", headers={"Authorization": f"Bearer {token}"})
        [statement] = inbox.json()["statements"]
        assert statement["action"] == "end_space" and statement["report_id"] == report_id
        assert statement["explanation"] == "The host insulted callers repeatedly."
        assert http.get("/api/moderation/reports", headers=OPERATOR).json()["reports"] == []
    assert "Traceback" not in browser_server.log()
