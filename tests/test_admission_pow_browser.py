"""The browser's solver (web/static/pow.js) and the server's check agree byte for byte.

Chromium solves a challenge with WebCrypto; the Python side must accept the
answer and, counting the same way, must have found the same first answer.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from townhall.admission import Signer, issue_challenge, verify_solution
from townhall.admission.proof_of_work import DEFAULT_BITS, meets_difficulty, solve

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
STATIC = Path(__file__).resolve().parents[1] / "src" / "townhall" / "web" / "static"
ORIGIN = "http://127.0.0.1:9"  # never contacted: every request is answered by a route
SECRET = b"pow-browser-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def page():
    """One Chromium for the module (launching costs ~1.5 s); sync API, no event loop."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()

            def serve(route):
                path = route.request.url.removeprefix(ORIGIN)
                if path == "/pow.js":
                    body = (STATIC / "pow.js").read_text()
                    route.fulfill(body=body, content_type="text/javascript")
                else:
                    html = "<!doctype html><title>pow</title>"
                    route.fulfill(body=html, content_type="text/html")

            page.route(f"{ORIGIN}/**", serve)
            page.goto(f"{ORIGIN}/")
            yield page
        finally:
            browser.close()


SOLVE_JS = """async ([challenge, bits]) => {
  const pow = await import('/pow.js');
  const started = performance.now();
  const solution = await pow.solve(challenge, bits);
  return [solution, performance.now() - started];
}"""


def test_browser_solution_is_accepted_by_the_server(page):
    signer = Signer(SECRET)
    for bits in (0, 1, 8, 12):
        challenge = issue_challenge(signer, 1_000.0, bits, scope="sp_1")
        solution, _ = page.evaluate(SOLVE_JS, [challenge.token, bits])
        assert solution == solve(challenge.token, bits)  # same bytes, same counting
        assert verify_solution(signer, challenge.token, solution, 1_001.0, scope="sp_1")


def test_browser_and_server_count_leading_zero_bits_alike(page):
    inputs = [f"challenge:{n}" for n in range(300)]
    browser = page.evaluate(
        """async (inputs) => {
          const pow = await import('/pow.js');
          const out = [];
          for (const text of inputs) {
            const digest = new Uint8Array(
              await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
            const bits = [];
            for (let b = 0; b <= 12; b += 1) bits.push(pow.hasLeadingZeroBits(digest, b));
            out.push(bits);
          }
          return out;
        }""",
        inputs,
    )
    server = [
        [meets_difficulty(hashlib.sha256(text.encode()).digest(), b) for b in range(13)]
        for text in inputs
    ]
    assert browser == server
    assert any(row[4] for row in server) and not all(row[4] for row in server)


def test_browser_solve_time_at_the_default_difficulty(page):
    signer = Signer(SECRET)
    challenge = issue_challenge(signer, 1_000.0, DEFAULT_BITS)
    solution, ms = page.evaluate(SOLVE_JS, [challenge.token, DEFAULT_BITS])
    attempts = int(solution, 36) + 1
    print(
        f"\nChromium: {DEFAULT_BITS} bits solved in {ms:.0f} ms, {attempts} hashes "
        f"({attempts / max(ms, 1e-3) * 1e3:,.0f} hashes/s)"
    )
    assert verify_solution(signer, challenge.token, solution, 1_001.0)


def test_aborting_stops_the_solver(page):
    result = page.evaluate(
        """async () => {
          const pow = await import('/pow.js');
          const controller = new AbortController();
          controller.abort();
          try { await pow.solve('x', 30, { signal: controller.signal }); return 'solved'; }
          catch (e) { return e.name; }
        }"""
    )
    assert result == "AbortError"
