"""The space itself in the browser: the host edits its details in the studio and
listeners see them; the host sees who listens (by name) and mutes everyone at once.
Needs the loopback-only namespace of scripts/isolated."""

from __future__ import annotations

from browser import (
    BROWSER_TEST,
    axe_violations,
    collect_csp_violations,
    create_space,
    go_live_with_mic,
    open_and_play,
    screenshot,
    sign_up,
)

pytestmark = [*BROWSER_TEST]



def test_the_host_edits_the_space_and_sees_who_listens(new_page, browser_server) -> None:
    host = new_page("desktop")
    host_csp = collect_csp_violations(host)
    sign_up(host, browser_server.url, "details_host")
    space_id = create_space(host, "Before")
    go_live_with_mic(host)
    host.fill("#details-form input[name=title]", "After the edit")
    host.fill("#details-form textarea[name=description]", "Line one\nLine two")
    host.fill("#details-form input[name=pinned_url]", "https://example.org/agenda")
    host.fill("#details-form input[name=topics]", "Audio, Open source")
    host.click("#details-form button[type=submit]")
    host.wait_for_function(
        "() => document.querySelector('#details-status').textContent.includes('Saved')"
    )
    assert host.inner_text("#title") == "After the edit"

    listener = new_page("phone")
    listener_csp = collect_csp_violations(listener)
    sign_up(listener, browser_server.url, "details_listener")
    open_and_play(listener, browser_server.url, space_id, "details_host")
    assert listener.inner_text("#title") == "After the edit"
    assert listener.inner_text("#description") == "Line one\nLine two"
    assert listener.get_attribute("#pinned a", "href") == "https://example.org/agenda"
    assert listener.eval_on_selector_all(
        "#topics li", "els => els.map(e => e.textContent)"
    ) == [
        "Audio",
        "Open source",
    ]
    screenshot(listener, "listen-details-phone")
    assert axe_violations(listener) == []

    host.wait_for_function(
        "(name) => document.querySelector('#listener-names').textContent.includes(name)",
        arg="details_listener",
    )
    assert "1 signed in" in host.inner_text("#listener-count")
    host.click("#mute-all")
    host.wait_for_function(
        "() => document.querySelector('#details-status').textContent.includes('muted')"
    )
    screenshot(host, "studio-details-desktop")
    assert axe_violations(host) == []
    assert host_csp == [] and listener_csp == []
