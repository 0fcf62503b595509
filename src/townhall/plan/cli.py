"""`townhall plan --listeners N [--bitrate BPS] [--spaces S]`: the printed plan."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from townhall.plan.figures import NOT_FIGURES, FiguresError, MeasuredFigures, load_figures
from townhall.plan.sizing import Assumptions, Demand, Plan, Tier, plan

DEFAULT_FIGURES = Path("bench/figures.json")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _bps(n: float) -> str:
    return f"{n / 1e9:.2f} Gbit/s" if n >= 1e9 else f"{n / 1e6:.1f} Mbit/s"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def _tier(name: str, tier: Tier) -> str:
    return (
        f"{name:8} {tier.nodes:>5} x {tier.cores_each} cores = {tier.cores:>5} cores | "
        f"memory {_gib(tier.memory_bytes_each)} each | egress {_bps(tier.egress_bps_each)} "
        f"each, {_bps(tier.egress_bps)} in all"
    )


def render(
    result: Plan, figures: MeasuredFigures, demand: Demand, assume: Assumptions, path: Path
) -> str:
    lines = [
        f"plan for {demand.listeners:,} listeners at {demand.bitrate_bps / 1000:g} kbps "
        f"in {demand.spaces} space(s)",
        "",
        _tier("edges", result.edges),
        _tier("origins", result.origins),
        f"the waiting room admits everyone in {result.admit_everyone_s:,.0f} s at the edges' "
        "measured join rate",
        "",
        f"figures: {path} (measured {figures.measured_at} on {figures.machine})",
        f"  by: {figures.command}",
    ]
    lines += [
        f"  {f.name} = {_number(getattr(figures, f.name))}"
        for f in fields(MeasuredFigures)
        if f.name not in NOT_FIGURES
    ]
    lines.append("assumptions:")
    lines += [f"  {f.name} = {getattr(assume, f.name):g}" for f in fields(Assumptions)]
    lines += [
        f"  fan-out CPU measured with {figures.chunk_ms} ms live chunks; it does not depend "
        "on the bitrate (one write per chunk);",
        "  origin memory: one space per process as measured (an upper bound);",
        "  nodes are like the bench machine's cores; egress counts ADTS framing as delivered.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="townhall plan", description=__doc__)
    parser.add_argument("--listeners", type=int, required=True)
    parser.add_argument("--bitrate", type=float, default=48_000, help="bits/s (48000)")
    parser.add_argument("--spaces", type=int, default=1, help="live spaces at once (1)")
    parser.add_argument("--figures", type=Path, default=DEFAULT_FIGURES)
    defaults = Assumptions()
    for f in fields(Assumptions):
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)), default=None
        )
    args = parser.parse_args(argv)
    changes = {f.name: getattr(args, f.name) for f in fields(Assumptions)}
    try:
        assume = Assumptions(**{k: v for k, v in changes.items() if v is not None})
        demand = Demand(args.listeners, args.bitrate, args.spaces)
        figures = load_figures(args.figures)
        result = plan(figures, demand, assume)
    except (FiguresError, ValueError) as error:
        print(f"townhall plan: {error}", file=sys.stderr)
        return 2
    print(render(result, figures, demand, assume, args.figures))
    return 0
