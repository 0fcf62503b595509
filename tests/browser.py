"""Helpers for driving Debian's headless Chromium with Playwright.

Playwright cannot download its own browser here, so tests launch
/usr/bin/chromium with a fake microphone that plays a WAV file we write: a
known tone in, and the test listens for the same tone coming out.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import statistics
import struct
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import NO_LAG_DOOR as NO_LAG_DOOR  # the browser tests' servers use it too
from conftest import RunningServer, start_server, stop_server

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
"""The two sizes every page is tried at: a laptop and a current phone."""
SCREENSHOT_DIR = Path(os.environ.get("TOWNHALL_SCREENSHOTS", Path(__file__).parent / "screenshots"))
"""Where browser tests leave a picture of each page (git-ignored) for a person to look at."""
UI_TIMEOUT_MS = 20_000
"""Generous: a loaded 2-core CI machine starts Chromium and aiortc slowly. A module may
set its own UI_TIMEOUT_MS (the pages' default timeout in `new_page`)."""
SAMPLE_RATE = 48_000
TONE_AMPLITUDE = 0.4
"""Loud enough to stand far above the codec's noise, with headroom for gain control."""

BASE_ARGS = (
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


BROWSER_TEST = (
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
)
"""The marks of every browser test module: `pytestmark = [*BROWSER_TEST, ...]`."""


def chromium_args(fake_audio: Path | None = None) -> list[str]:
    args = list(BASE_ARGS)
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    return args


def launch_chromium(playwright: Any, fake_audio: Path | None = None) -> Any:
    """A headless Chromium whose microphone plays `fake_audio` (looped)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=chromium_args(fake_audio), headless=True
    )


@contextlib.contextmanager
def running_chromium(fake_audio: Path) -> Iterator[Any]:
    """Playwright and a headless Chromium whose microphone plays `fake_audio`, closed on
    exit (the `chromium` fixture; a module whose microphone must say something else
    overrides that fixture with this)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, fake_audio)
        try:
            yield browser
        finally:
            browser.close()


def write_tone_wav(path: Path, freq_hz: float, seconds: float = 4.0) -> Path:
    """A mono 16-bit sine; a whole number of cycles so Chromium's looping has no click."""
    cycles = max(1, round(freq_hz * seconds))
    frames = round(cycles * SAMPLE_RATE / freq_hz)
    peak = TONE_AMPLITUDE * 32767
    samples = (int(peak * math.sin(2 * math.pi * freq_hz * i / SAMPLE_RATE)) for i in range(frames))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


# Routes the page's live player (<audio> element) through a Web Audio analyser.
# Once an element feeds a MediaElementSource its sound goes only through the
# graph, so the analyser also connects to the destination to keep it playing.
# With a selector, analyses that <audio> element's MediaStream (WebRTC) instead.
ATTACH_ANALYSER_JS = """
([fftSize, selector]) => {
  const ctx = new AudioContext();
  const source = selector
    ? ctx.createMediaStreamSource(document.querySelector(selector).srcObject)
    : ctx.createMediaElementSource(window.townhallPlayer.audio);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = fftSize;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  if (!selector) analyser.connect(ctx.destination);
  window.__townhallAnalyser = { ctx, analyser };
  return ctx.resume().then(() => ctx.state);
}
"""

# Routes any <audio src=...> element (a clip, a recording) through the analyser, and on
# to the speakers so it keeps playing; SPECTRUM_JS and the waits below then read it.
ATTACH_ELEMENT_ANALYSER_JS = """
([fftSize, selector]) => {
  const ctx = new AudioContext();
  const source = ctx.createMediaElementSource(document.querySelector(selector));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = fftSize;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  analyser.connect(ctx.destination);
  window.__townhallAnalyser = { ctx, analyser };
  return ctx.resume().then(() => ctx.state);
}
"""

# One spectrum: the loudest bin's frequency, the level around `freqHz` and
# the median level of all bins (the floor), in dBFS.
SPECTRUM_JS = """
(freqHz) => {
  const { ctx, analyser } = window.__townhallAnalyser;
  const data = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(data);
  const binHz = ctx.sampleRate / analyser.fftSize;
  let loudest = 0;
  for (let i = 1; i < data.length; i++) if (data[i] > data[loudest]) loudest = i;
  const center = Math.round(freqHz / binHz);
  let tone = -Infinity;
  for (let i = center - 2; i <= center + 2; i++) tone = Math.max(tone, data[i]);
  const sorted = Array.from(data).filter(Number.isFinite).sort((a, b) => a - b);
  const floor = sorted.length ? sorted[Math.floor(sorted.length / 2)] : -Infinity;
  return { peakHz: loudest * binHz, toneDb: tone, floorDb: floor, sampleRate: ctx.sampleRate,
           state: ctx.state };
}
"""

# True once the band around `freqHz` has fallen below `belowDb` (e.g. after a mute).
TONE_GONE_JS = """
([freqHz, belowDb]) => {
  const { ctx, analyser } = window.__townhallAnalyser;
  const data = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(data);
  const center = Math.round(freqHz / (ctx.sampleRate / analyser.fftSize));
  for (let i = center - 2; i <= center + 2; i++) if (data[i] > belowDb) return false;
  return true;
}
"""

# True once the band around `freqHz` stands above `aboveDb` (the speaker's tone arrived).
TONE_HEARD_JS = """
([freqHz, aboveDb]) => {
  const { ctx, analyser } = window.__townhallAnalyser;
  const data = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(data);
  const center = Math.round(freqHz / (ctx.sampleRate / analyser.fftSize));
  for (let i = center - 2; i <= center + 2; i++) if (data[i] > aboveDb) return true;
  return false;
}
"""

PLAYER_JS = """
() => {
  const p = window.townhallPlayer;
  const b = p.audio.buffered;
  return { state: p.state, bytes: p.bytesReceived, currentTime: p.audio.currentTime,
           bufferedEnd: b.length ? b.end(b.length - 1) : null, paused: p.audio.paused,
           delivery: p.delivery, edgeSkips: p.edgeSkips, reconnects: p.reconnects };
}
"""


@dataclass(frozen=True)
class Spectrum:
    peak_hz: float
    tone_db: float
    floor_db: float

    @property
    def snr_db(self) -> float:
        """Tone over floor; 0 when there is no tone at all (digital silence)."""
        if not math.isfinite(self.tone_db):
            return 0.0
        if not math.isfinite(self.floor_db):
            return math.inf
        return self.tone_db - self.floor_db


def attach_analyser(page: Any, stream_of: str | None = None, fft_size: int = 8192) -> str:
    """Analyses the live player, or the MediaStream of the <audio> at `stream_of`."""
    return page.evaluate(ATTACH_ANALYSER_JS, [fft_size, stream_of])


def attach_element_analyser(page: Any, selector: str, fft_size: int = 8192) -> str:
    """Analyses what the <audio> element at `selector` plays from its `src`."""
    return page.evaluate(ATTACH_ELEMENT_ANALYSER_JS, [fft_size, selector])


def spectrum(page: Any, freq_hz: float) -> Spectrum:
    raw = page.evaluate(SPECTRUM_JS, freq_hz)
    return Spectrum(peak_hz=raw["peakHz"], tone_db=raw["toneDb"], floor_db=raw["floorDb"])


def player_state(page: Any) -> dict[str, Any]:
    return page.evaluate(PLAYER_JS)


def wait_for_tone_gone(page: Any, freq_hz: float, below_db: float, timeout_ms: float) -> None:
    """Polls the analyser every 20 ms until the tone has gone."""
    page.wait_for_function(TONE_GONE_JS, arg=[freq_hz, below_db], polling=20, timeout=timeout_ms)


def wait_for_tone(page: Any, freq_hz: float, above_db: float, timeout_ms: float) -> None:
    """Polls the analyser every 20 ms until the tone is there (a microphone and its
    noise suppression take a moment to start on a fresh browser)."""
    page.wait_for_function(TONE_HEARD_JS, arg=[freq_hz, above_db], polling=20, timeout=timeout_ms)


def median_spectrum(page: Any, freq_hz: float, reads: int, interval_ms: float) -> Spectrum:
    """The median of several spectra (per field), `interval_ms` apart."""
    spectra = []
    for _ in range(reads):
        page.wait_for_timeout(interval_ms)
        spectra.append(spectrum(page, freq_hz))
    return Spectrum(
        peak_hz=statistics.median(s.peak_hz for s in spectra),
        tone_db=statistics.median(s.tone_db for s in spectra),
        floor_db=statistics.median(s.floor_db for s in spectra),
    )


@contextlib.contextmanager
def page_factory(browser, timeout_ms: float) -> Iterator[Callable[..., Any]]:
    """Makes pages, each in its own browser context (its own cookies, like another
    person), and closes them all on exit. `make(viewport="phone")` sizes the page."""
    contexts = []

    def make(viewport: str = "desktop"):  # type: ignore[no-untyped-def]
        phone = viewport == "phone"
        context = browser.new_context(
            viewport=VIEWPORTS[viewport], is_mobile=phone, has_touch=phone
        )
        context.set_default_timeout(timeout_ms)
        contexts.append(context)
        return context.new_page()

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


# -- the fixtures every browser test uses (a pytest plugin: see conftest.pytest_plugins) ------


@pytest.fixture
def browser_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    """`townhall serve` for a browser test, without the door's loop-lag guard (see
    NO_LAG_DOOR). A test that needs more in the server's environment says so with
    `@pytest.mark.server_env(NAME="value")` (on the test or its module)."""
    env = dict(NO_LAG_DOOR)
    for marker in reversed(list(request.node.iter_markers("server_env"))):
        env.update(marker.kwargs)
    running = start_server(tmp_path / "server", **env)
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def new_page(
    request: pytest.FixtureRequest, chromium: Any, browser_server: RunningServer
) -> Iterator[Callable[..., Any]]:
    """`new_page(viewport)`: pages of `browser_server`'s test, each its own person (see
    page_factory), all closed before the server stops (no stream holds its shutdown)."""
    timeout_ms = getattr(request.module, "UI_TIMEOUT_MS", UI_TIMEOUT_MS)
    with page_factory(chromium, timeout_ms) as make:
        yield make


def screenshot(page: Any, name: str) -> Path:
    """Saves the whole page as SCREENSHOT_DIR/<name>.png (animations settled)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


# -- the steps of a person using the product ------------------------------------------------


def sign_up(page: Any, base_url: str, username: str) -> None:
    page.goto(base_url + "/")
    page.fill("#auth-form input[name=username]", username)
    page.fill("#auth-form input[name=password]", PASSWORD)
    page.click("#auth-form button[value=signup]")
    page.wait_for_selector("#create-form", state="visible")


def create_space(page: Any, title: str) -> str:
    page.fill("#create-form input[name=title]", title)
    page.click("#create-form button[type=submit]")
    page.wait_for_url("**/studio")
    return str(page.url.split("/s/")[1].split("/")[0])


def wait_for_mic_live(page: Any) -> None:
    page.wait_for_function(
        "() => document.querySelector('#mic-status').textContent.includes('live on stage')"
    )


def go_live_with_mic(page: Any) -> None:
    page.click("#start")
    page.wait_for_selector("#state .state-live")
    page.click("#mic")
    wait_for_mic_live(page)


def host_goes_live(page: Any, base_url: str, username: str, title: str) -> str:
    """A new host signs up, creates a space and goes live from the studio with the fake
    microphone; returns the space's id."""
    sign_up(page, base_url, username)
    space_id = create_space(page, title)
    go_live_with_mic(page)
    return space_id


def play_with_hls_js(page: Any, listen_url: str) -> None:
    """Opens a listening page that plays HLS (`?via=hls`), checks the page took hls.js,
    presses play and listens to the page's audio (attach_analyser)."""
    page.goto(listen_url)
    page.wait_for_selector("#play:enabled")
    assert page.evaluate("() => window.townhallPlayer.delivery") == "hlsjs"
    page.click("#play")
    page.wait_for_function("() => window.townhallPlayer.state === 'playing'")
    assert attach_analyser(page) == "running"


def open_and_play(page: Any, base_url: str, space_id: str, host: str) -> float:
    """Opens the listen page, presses play; returns seconds from press to playing."""
    page.goto(f"{base_url}/s/{space_id}")
    page.wait_for_selector("#play:enabled")
    assert host in page.inner_text("#stage")
    pressed_at = time.monotonic()
    page.click("#play")
    try:
        page.wait_for_function("() => window.townhallPlayer.state === 'playing'")
    except Exception as exc:  # say where it stuck: the page's own words and the player
        status = page.inner_text("#player-status")
        raise AssertionError(f"not playing: {status!r}, {player_state(page)}") from exc
    return time.monotonic() - pressed_at


AXE_JS = Path(__file__).parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
"""axe-core from npm (`make test` installs it: tests/js/package.json)."""
SERIOUS = ("serious", "critical")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now, each as
    {id, impact, help, targets}. Evaluated through DevTools, so the page's CSP does not
    apply to it (the pages allow no inline or injected script)."""
    if not AXE_JS.exists():
        raise RuntimeError(f"{AXE_JS} is missing: run `make test-tools` (npm ci in tests/js)")
    if not page.evaluate("() => Boolean(window.axe)"):
        page.evaluate(AXE_JS.read_text() + "\n;undefined")
    found = page.evaluate(
        """async () => {
          const result = await axe.run(document, { resultTypes: ['violations'] });
          return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
            targets: v.nodes.map((n) => n.target.join(' ')) }));
        }"""
    )
    return [v for v in found if v["impact"] in SERIOUS]


def collect_csp_violations(page: Any) -> list[str]:
    """A list that fills with the page's Content-Security-Policy complaints."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return violations
