"""`townhall loadtest URL [...]`: the flash-crowd rehearsal from the command line.

Why uvloop when present: the generator must stay cheaper than the server it
measures, and uvloop roughly halves the CPU per connection of asyncio's own
loop. SIGINT and SIGTERM stop the run early and still write the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from townhall.loadtest.addresses import DEFAULT_ATTACKER_ADDRESSES, DEFAULT_LISTENER_ADDRESSES
from townhall.loadtest.config import (
    DEFAULT_FIRST_AUDIO_TIMEOUT_S,
    DEFAULT_HOLD_S,
    DEFAULT_HOLD_SIGMA,
    DEFAULT_MAX_LISTENERS,
    DEFAULT_MAX_RETRY_AFTER_S,
    DEFAULT_RATE,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_SLOWLORIS_INTERVAL_S,
    DEFAULT_STATS_PATHS,
    DEFAULT_THINK_S,
    AttackRate,
    LoadtestConfig,
)
from townhall.loadtest.generators import GeneratorFailed, plan_generators, run_generators
from townhall.loadtest.notify_compare import COMPARISON_NAME, compare, comparison_lines
from townhall.loadtest.profiles import (
    DEFAULT_RAMP_S,
    DEFAULT_SPIKE_AT_S,
    DEFAULT_SPIKE_S,
    PROFILE_NAMES,
)
from townhall.loadtest.progress import ProgressPrinter
from townhall.loadtest.report import describe_attack, write_report
from townhall.loadtest.runner import LoadtestError, run_loadtest

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
MANY_GENERATORS_TIMEOUT_S = 3_600.0
"""Without --duration, how long generator processes may run before they are stopped."""


def fraction(text: str) -> float:
    """"0.001", "1/1000" or "1e-3" -> 0.001 (argparse type)."""
    try:
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            value = float(numerator) / float(denominator)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def arrival_rate(text: str) -> tuple[float, bool]:
    """"500" -> (500, False); "10x" -> (10, True): a multiple of the node's capacity."""
    relative = text.strip().lower().endswith("x")
    try:
        value = float(text.strip()[:-1] if relative else text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a rate cannot be negative")
    return value, relative


def attack_rate(text: str) -> AttackRate:
    try:
        return AttackRate.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give requests per second (200) or a multiple of the arrival rate (2x)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="townhall loadtest",
        description="Rehearse a flash crowd against a townhall server (loopback): simulated "
        "listeners fetch the snapshot, join, wait as told, stream, hold and leave, while "
        "optional attacks run beside them. Writes report.json and report.html.",
    )
    p.add_argument("url", nargs="+",
                   help="server URL (http://127.0.0.1:8080) or a space's /s/ID URL; several "
                        "nodes' URLs share the crowd among generator processes")
    p.add_argument("--generators", type=int, default=1,
                   help="load generator processes (round robin over the URLs); their "
                        "reports are merged into one")
    p.add_argument("--space", help="space id (default: from the URL, else the first live space)")
    g = p.add_argument_group("arrivals (open model)")
    g.add_argument("--profile", choices=PROFILE_NAMES, default="constant")
    g.add_argument("--rate", type=arrival_rate, default=(DEFAULT_RATE, False),
                   help="arrivals/s: constant rate, ramp target, or spike peak (profile units); "
                        "'10x' means ten times the node's admission capacity")
    g.add_argument("--base-rate", type=float, default=None,
                   help="ramp start / spike baseline, in --rate's unit (default: a tenth)")
    g.add_argument("--ramp-s", type=float, default=DEFAULT_RAMP_S)
    g.add_argument("--spike-at", type=float, default=DEFAULT_SPIKE_AT_S, dest="spike_at_s")
    g.add_argument("--spike-s", type=float, default=DEFAULT_SPIKE_S)
    g.add_argument("--scale", type=fraction, default=1.0,
                   help="multiply the crowd, e.g. 1/1000 for aug2024 on one machine")
    g.add_argument("--time-scale", type=fraction, default=1.0,
                   help="profile seconds per wall second (60: an hour in a minute)")
    g.add_argument("--uniform", action="store_true",
                   help="evenly spaced arrivals instead of a Poisson process")
    g.add_argument("--duration", type=float, default=None, dest="duration_s",
                   help="wall seconds (default: the profile's length)")
    g.add_argument("--max-listeners", type=int, default=DEFAULT_MAX_LISTENERS,
                   help="arrivals at most")
    g.add_argument("--max-open", type=int, default=None,
                   help="listeners alive at once at most (default: from the file limit)")
    g.add_argument("--seed", type=int, default=1)
    n = p.add_argument_group("notified followers (instead of a profile)")
    n.add_argument("--notify-followers", type=int, default=0,
                   help="followers told 'live now': runs twice, without then with pacing, "
                        "and compares (at most --max-listeners)")
    n.add_argument("--reaction-s", type=float, default=5.0,
                   help="mean seconds from being told to arriving (exponential)")
    n.add_argument("--notify-interval", type=float, default=1.0, dest="notify_interval_s",
                   help="seconds between paced waves")
    n.add_argument("--arrival-share", type=fraction, default=1.0,
                   help="share of the told expected to come (pacing's assumption)")
    b = p.add_argument_group("listener behaviour")
    b.add_argument("--hls-fraction", type=float, default=0.0,
                   help="share of listeners using HLS instead of the live stream")
    b.add_argument("--think-s", type=float, default=DEFAULT_THINK_S,
                   help="median pause between snapshot and join")
    b.add_argument("--hold-s", type=float, default=DEFAULT_HOLD_S,
                   help="median listening time (log-normal)")
    b.add_argument("--hold-sigma", type=float, default=DEFAULT_HOLD_SIGMA)
    b.add_argument("--patience-s", type=float, default=0.0,
                   help="give up waiting after this long (0: never)")
    b.add_argument("--timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT_S,
                   dest="request_timeout_s", help="per request")
    b.add_argument("--first-audio-timeout", type=float, default=DEFAULT_FIRST_AUDIO_TIMEOUT_S,
                   dest="first_audio_timeout_s")
    b.add_argument("--max-retry-after", type=float, default=DEFAULT_MAX_RETRY_AFTER_S,
                   dest="max_retry_after_s", help="obey server retry intervals up to this")
    b.add_argument("--listener-addresses", default=DEFAULT_LISTENER_ADDRESSES,
                   help="loopback addresses listeners connect from ('none': do not bind)")
    b.add_argument("--pow-workers", type=int, default=1,
                   help="processes solving proof-of-work challenges")
    a = p.add_argument_group("attacks (rates: N per second, or Nx the arrival rate)")
    a.add_argument("--source-addresses", default=DEFAULT_ATTACKER_ADDRESSES,
                   help="the few loopback addresses attacks come from")
    a.add_argument("--join-flood", type=attack_rate, default=AttackRate())
    a.add_argument("--forged-tickets", type=attack_rate, default=AttackRate())
    a.add_argument("--snapshot-flood", type=attack_rate, default=AttackRate())
    a.add_argument("--slowloris", type=int, default=0, help="slow connections held open")
    a.add_argument("--slowloris-interval", type=float, default=DEFAULT_SLOWLORIS_INTERVAL_S,
                   dest="slowloris_interval_s", help="seconds between trickled bytes")
    r = p.add_argument_group("report")
    r.add_argument("--capacity", type=float, default=None,
                   help="node admissions/s for goodput share (default: from /api/stats)")
    r.add_argument("--stats-path", action="append", dest="stats_paths", default=None,
                   help=f"server stats endpoint(s) to poll (default: "
                        f"{', '.join(DEFAULT_STATS_PATHS)})")
    r.add_argument("--report-dir", type=Path, default=None,
                   help="where report.json and report.html go (default: ./loadtest-<time>)")
    r.add_argument("--quiet", action="store_true", help="no live progress line")
    return p


def config_from_args(args: argparse.Namespace) -> LoadtestConfig:
    return LoadtestConfig(
        url=args.url[0], space=args.space, profile=args.profile, rate=args.rate[0],
        rate_is_capacity_multiple=args.rate[1],
        base_rate=args.base_rate, ramp_s=args.ramp_s, spike_at_s=args.spike_at_s,
        spike_s=args.spike_s, scale=args.scale, time_scale=args.time_scale,
        poisson=not args.uniform, duration_s=args.duration_s, max_listeners=args.max_listeners,
        max_open=args.max_open, seed=args.seed, hls_fraction=args.hls_fraction,
        think_s=args.think_s, hold_s=args.hold_s, hold_sigma=args.hold_sigma,
        patience_s=args.patience_s, request_timeout_s=args.request_timeout_s,
        first_audio_timeout_s=args.first_audio_timeout_s,
        max_retry_after_s=args.max_retry_after_s, listener_addresses=args.listener_addresses,
        source_addresses=args.source_addresses, join_flood=args.join_flood,
        forged_tickets=args.forged_tickets, snapshot_flood=args.snapshot_flood,
        slowloris=args.slowloris, slowloris_interval_s=args.slowloris_interval_s,
        capacity=args.capacity,
        stats_paths=tuple(args.stats_paths) if args.stats_paths else DEFAULT_STATS_PATHS,
        pow_workers=args.pow_workers,
        notify_followers=args.notify_followers, reaction_s=args.reaction_s,
        notify_interval_s=args.notify_interval_s, arrival_share=args.arrival_share,
    )


def raise_file_limit() -> int:
    """Lift the soft descriptor limit to the hard one: each live listener is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def summary_lines(report: dict[str, Any]) -> list[str]:
    s = report["summary"]
    ttfa = s["ttfa_s"]
    told = s["told_vs_actual"]
    good = s["goodput"]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f} ms"

    share = good["share_of_capacity"]
    lines = [
        f"arrivals {s['arrivals']}  admitted {s['admitted']}  heard audio {s['heard_audio']}  "
        f"waited {s['waited']}",
        f"5xx {s['http_5xx']}  timeouts {s['timeouts']}  connection errors "
        f"{s['connection_errors']}  4xx {s['http_4xx']}  stream drops {s['stream_drops']}",
        f"time to first audio p50 {ms(ttfa['p50'])}  p90 {ms(ttfa['p90'])}  p99 {ms(ttfa['p99'])}",
        f"dropped streams {s['stream_drops']}: audio again after p50 "
        f"{ms(s['resumed_s']['p50'])}  max {ms(s['resumed_s']['max'])}",
        f"goodput {good['per_s']}/s over {good['window_s']} s ({good['basis']})"
        + (f" = {share:.0%} of capacity {good['capacity_per_s']}/s" if share is not None else ""),
    ]
    if told.get("waited"):
        lines.append(
            f"waiting room: told {told['mean_told_s']:.1f} s on average, waited "
            f"{told['mean_actual_s']:.1f} s (mean error {told['mean_error_s']:+.1f} s, "
            f"|error| p90 {told['abs_error_s']['p90']:.1f} s)"
        )
    if told.get("still_waiting"):
        lines.append(
            f"still waiting at the end: {told['still_waiting']} (told "
            f"{told['still_waiting_mean_told_s']:.1f} s on average, waited "
            f"{told['still_waiting_mean_waited_s']:.1f} s so far; "
            f"{told['still_waiting_overdue']} well past their ETA)"
        )
    lines.extend(f"attack {name}: {describe_attack(entry)}" for name, entry in s["attacks"].items())
    return lines


async def _main_async(
    config: LoadtestConfig, quiet: bool, report_dir: Path | None = None
) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    progress = None if quiet else ProgressPrinter()
    if report_dir is not None:
        return await compare(config, report_dir, progress=progress, stop=stop)
    return await run_loadtest(config, progress=progress, stop=stop)


def main(argv: list[str]) -> int:
    """Entry point for `townhall loadtest ...` (argv without the subcommand)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else EXIT_USAGE
    config = config_from_args(args)
    raise_file_limit()
    report_dir = args.report_dir or Path(
        f"loadtest-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    if len(args.url) > 1 or args.generators > 1:
        return _main_many(args, argv, report_dir)
    if config.notify_followers:
        return _compare_main(config, args.quiet, report_dir)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            report = runner.run(_main_async(config, args.quiet))
    except LoadtestError as exc:
        print(f"townhall loadtest: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return _finish(report, report_dir)


def _main_many(args: argparse.Namespace, argv: list[str], report_dir: Path) -> int:
    """Several generator processes (townhall.loadtest.generators), one merged report."""
    options = list(argv)
    for url in args.url:
        options.remove(url)
    while "--generators" in options:
        at = options.index("--generators")
        del options[at : at + 2]
    options = [o for o in options if not o.startswith("--generators=")]
    try:
        plans = plan_generators(
            args.url, args.generators, scale=args.scale, max_listeners=args.max_listeners,
            seed=args.seed, rate_is_capacity_multiple=args.rate[1],
        )  # fmt: skip
        timeout_s = args.duration_s or MANY_GENERATORS_TIMEOUT_S
        report = run_generators(plans, options, report_dir, timeout_s)
    except (ValueError, GeneratorFailed) as exc:
        print(f"townhall loadtest: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{len(plans)} generators: " + ", ".join(f"{p.url} (scale {p.scale:g})" for p in plans))
    return _finish(report, report_dir)


def _finish(report: dict[str, Any], report_dir: Path) -> int:
    json_path, html_path = write_report(report, report_dir)
    for line in summary_lines(report):
        print(line)
    print(f"report: {html_path} ({json_path.name} beside it)")
    if report["meta"].get("client_bug"):
        print(f"warning: a simulated listener crashed: {report['meta']['client_bug']}",
              file=sys.stderr)
    return EXIT_OK


def _compare_main(config: LoadtestConfig, quiet: bool, report_dir: Path) -> int:
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(_main_async(config, quiet, report_dir))
    except LoadtestError as exc:
        print(f"townhall loadtest: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for line in comparison_lines(result):
        print(line)
    print(f"report: {report_dir / COMPARISON_NAME} (each run's report in unpaced/, paced/)")
    return EXIT_OK
