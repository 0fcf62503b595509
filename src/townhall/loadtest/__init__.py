"""`townhall loadtest`: rehearse a flash crowd (and attacks on it) against a server.

An open-model generator of simulated listeners - snapshot, join, waiting
room, live stream or HLS, hold, leave - driven from one asyncio process with a
small HTTP/1.1 client of its own, reporting as JSON and a self-contained HTML
page. Entry points: :func:`run_loadtest` (async, returns the report) and
``townhall.loadtest.cli.main(argv)``.
"""

from townhall.loadtest.config import AttackRate, LoadtestConfig
from townhall.loadtest.profiles import Profile, arrival_times, build_profile
from townhall.loadtest.report import render_html, write_report
from townhall.loadtest.runner import LoadtestError, run_loadtest

__all__ = [
    "AttackRate",
    "LoadtestConfig",
    "LoadtestError",
    "Profile",
    "arrival_times",
    "build_profile",
    "render_html",
    "run_loadtest",
    "write_report",
]
