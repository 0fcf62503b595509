"""``python -m bench``: townhall and Icecast 2, side by side, in one run.

Runs inside a private network namespace holding only loopback (re-executing itself
through scripts/isolated when it is not in one already), because townhall's side
uses a real WebRTC speaker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.figures import write_figures
from bench.report import table, write_json
from bench.run import run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ISOLATED_MARK = "TOWNHALL_BENCH_ISOLATED"


def _isolated() -> bool:
    return set(os.listdir("/sys/class/net")) <= {"lo"}


def _parse(argv: list[str]) -> tuple[BenchConfig, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite's)")
    for f in fields(BenchConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "servers":
            parser.add_argument(flag, help="comma-separated: icecast,townhall")
        else:
            parser.add_argument(flag, type=type(f.default), help=f"default {f.default}")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    config = BenchConfig.smoke() if args.smoke else BenchConfig()
    given = {f.name: getattr(args, f.name) for f in fields(BenchConfig)}
    changes = {name: value for name, value in given.items() if value is not None}
    if "servers" in changes:
        changes["servers"] = tuple(s.strip() for s in changes["servers"].split(",") if s.strip())
    return replace(config, **changes), args.results


async def _run_until_signalled(config: BenchConfig, workdir: Path) -> dict[str, Any]:
    """SIGTERM (a `timeout`, say) cancels the run like Ctrl-C does, so every server and
    client it started is stopped by the finally blocks instead of left behind."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(config, workdir)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not _isolated() and not os.environ.get(ISOLATED_MARK):
        script = ROOT / "scripts" / "isolated"
        env = {**os.environ, ISOLATED_MARK: "1"}
        os.execve(str(script), [str(script), sys.executable, "-m", "bench", *argv], env)
    config, results_dir = _parse(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it
    os.sched_setaffinity(0, {int(c) for c in config.client_cpus.split(",")})
    from townhall.stage.ice import use_host_addresses

    use_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="townhall-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # Icecast drops root and must reach its own folder
        results = asyncio.run(_run_until_signalled(config, workdir))
    print()
    print(table(results))
    results["command"] = "python -m bench " + " ".join(argv)
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = write_json(results, results_dir)
    print(f"\nresults: {path}")
    if "townhall" in results and "--smoke" not in argv:  # smoke sizes plan nothing
        print(f"planning figures (townhall plan): {write_figures(results, results['command'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
