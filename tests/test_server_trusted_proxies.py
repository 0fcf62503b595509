"""A real server behind a trusted proxy (127.0.0.1 here): per-address limits key on
the forwarded client, the session cookie is Secure when the browser used https, and
a peer that is not a trusted proxy cannot choose its address by header."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from conftest import RunningServer, free_port, start_server, stop_server

PROXY = "127.0.0.1"
UNTRUSTED = "127.0.0.2"
ANOTHER_UNTRUSTED = "127.0.0.3"
BURST = 5
"""TOWNHALL_ADMISSION_PER_ADDRESS_RATE=1: each address may make 5 writes at once (and one
more each second: a slow machine may see one more)."""


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory) -> RunningServer:
    running = start_server(
        tmp_path_factory.mktemp("proxied"),
        TOWNHALL_HTTP_TRUSTED_PROXIES=f"{PROXY}/32,10.9.0.0/16",
        TOWNHALL_ADMISSION_PER_ADDRESS_RATE="1",
    )
    yield running
    stop_server(running)


def _client(local_address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=local_address), timeout=5)


def _writes_until_limited(http: httpx.Client, url: str, forwarded_for: str) -> int:
    """Writes (a bad sign-up: refused after the per-address check) until a 429."""
    for n in range(BURST * 3):
        answer = http.post(url + "/api/users", json={}, headers={"x-forwarded-for": forwarded_for})
        if answer.status_code == 429:
            return n
        assert answer.status_code in (400, 422), answer.text
    return BURST * 3


def test_each_forwarded_client_has_its_own_bucket(behind_proxy: RunningServer) -> None:
    with _client(PROXY) as proxy:
        assert _writes_until_limited(proxy, behind_proxy.url, "203.0.113.1") >= BURST
        assert _writes_until_limited(proxy, behind_proxy.url, "203.0.113.2") >= BURST
        spoofed = "203.0.113.1, 203.0.113.3"  # the proxy appended .3; .1 is the client's lie
        assert _writes_until_limited(proxy, behind_proxy.url, spoofed) >= BURST


def test_an_untrusted_peer_cannot_choose_its_address(behind_proxy: RunningServer) -> None:
    with _client(UNTRUSTED) as direct:
        assert _writes_until_limited(direct, behind_proxy.url, "198.51.100.1") >= BURST
        assert _writes_until_limited(direct, behind_proxy.url, "198.51.100.2") <= 1


def _session_cookie(http: httpx.Client, url: str, forwarded: dict[str, str]) -> str:
    account = {"username": "cookie", "password": "password123"}
    http.post(url + "/api/users", json=account, headers=forwarded)
    answer = http.post(
        url + "/api/sessions",
        json=account,
        headers=forwarded,
    )
    assert answer.status_code == 201, answer.text
    return answer.headers["set-cookie"]


def test_session_cookie_is_secure_when_the_browser_used_https(behind_proxy) -> None:
    https = {"x-forwarded-for": "10.9.1.1", "x-forwarded-proto": "https"}
    with _client(PROXY) as proxy:
        assert "secure" in _session_cookie(proxy, behind_proxy.url, https).lower()
        plain = {"x-forwarded-for": "10.9.1.2", "x-forwarded-proto": "http"}
        assert "secure" not in _session_cookie(proxy, behind_proxy.url, plain).lower()
    with _client(ANOTHER_UNTRUSTED) as direct:
        assert "secure" not in _session_cookie(direct, behind_proxy.url, https).lower()
    assert "Traceback" not in behind_proxy.log()


def test_the_command_line_flag(tmp_path) -> None:
    """`townhall serve --trusted-proxies CIDR,...` does what the variable does."""
    running = start_server(
        tmp_path, args=("--trusted-proxies", f"10.9.0.0/16,{PROXY}/32"),
        TOWNHALL_ADMISSION_PER_ADDRESS_RATE="1",
    )
    try:
        with _client(PROXY) as proxy:
            assert _writes_until_limited(proxy, running.url, "203.0.113.1") >= BURST
            assert _writes_until_limited(proxy, running.url, "203.0.113.2") >= BURST
    finally:
        stop_server(running)


@pytest.mark.parametrize(
    ("flags", "env", "said"),
    [
        (("--trusted-proxies", "10.0.0.0/33"), {}, "not a CIDR network: '10.0.0.0/33'"),
        ((), {"TOWNHALL_HTTP_TRUSTED_PROXIES": "nginx"}, "not a CIDR network: 'nginx'"),
        ((), {"TOWNHALL_HTTP_FORWARDED_HEADER": "x-real-ip"}, "forwarded header must be"),
        ((), {"TOWNHALL_ADMIN_TOKEN": "operator-secret"}, "at least 32 characters"),
        ((), {"TOWNHALL_SECRET": "short"}, "TOWNHALL_SECRET must be at least 16 bytes"),
    ],
)
def test_bad_settings_stop_the_start_with_a_clear_word(tmp_path, flags, env, said) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "townhall", "serve", "--port", str(free_port()),
         "--data-dir", str(tmp_path), *flags],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr
