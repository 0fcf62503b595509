"""`townhall plan`: the arithmetic on hand-checked figures, and the command's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from townhall.cli import main
from townhall.plan.figures import FiguresError, load_figures
from townhall.plan.sizing import Assumptions, Demand, plan

MIB = 2**20
FIGURES = {
    "measured_at": "2026-11-26T10:00:00Z",
    "command": "python -m bench --servers townhall",
    "machine": {"cpu": "test cpu", "cores": 2},
    "bitrate_bps": 48_000,
    "figures": {
        "listeners_per_core": 10_000,
        "rss_bytes_per_listener": 10_000,
        "node_base_rss_bytes": 100 * MIB,
        "space_cpu_share_of_core": 0.1,
        "full_joins_per_s_per_core": 1_000,
        "delivered_kbps_per_listener": 50,
    },
}


@pytest.fixture
def figures_file(tmp_path: Path) -> Path:
    path = tmp_path / "figures.json"
    path.write_text(json.dumps(FIGURES))
    return path


def test_a_crowd_of_1_2_million_in_ten_spaces(figures_file: Path) -> None:
    result = plan(
        load_figures(figures_file),
        Demand(listeners=1_200_000, bitrate_bps=48_000, spaces=10),
        Assumptions(cores_per_edge=8, cores_per_origin=8, target_utilisation=0.5),
    )
    # 1.2M / (10,000 x 0.5) = 240 cores = 30 edges of 8, 40,000 listeners each
    assert (result.edges.nodes, result.edges.cores) == (30, 240)
    assert result.edges.memory_bytes_each == 100 * MIB + 40_000 * 10_000
    assert result.edges.egress_bps_each == pytest.approx(40_000 * 50_000)
    assert result.edges.egress_bps == pytest.approx(60e9)
    # 10 spaces x 0.1 core / 0.5 = 2 cores: one origin, plus the spare
    assert result.origins.nodes == 2
    # each space fed once to each of 30 x 8 stream workers at 50 kbit/s on the wire
    assert result.origins.egress_bps_each == pytest.approx(10 * 240 * 50_000)
    assert result.origins.egress_bps == result.origins.egress_bps_each  # the spare sends nothing
    assert result.origins.memory_bytes_each == 10 * 100 * MIB
    # 240 cores x 1,000 joins/s x 0.5 = 120,000/s: 10 s for everyone
    assert result.admit_everyone_s == pytest.approx(10.0)


def test_a_small_crowd_still_gets_one_edge_and_origins_scale_with_spaces(
    figures_file: Path,
) -> None:
    figures = load_figures(figures_file)
    small = plan(figures, Demand(listeners=10, spaces=1), Assumptions())
    assert small.edges.nodes == 1 and small.origins.nodes == 2
    many = plan(figures, Demand(listeners=10, spaces=1_000), Assumptions(target_utilisation=1.0))
    assert many.origins.nodes == 100 // 8 + 1 + 1  # 100 cores: 13 origins of 8, plus the spare


def test_edges_are_added_when_the_network_not_the_cpu_is_the_limit(figures_file: Path) -> None:
    figures = load_figures(figures_file)
    slow_links = Assumptions(target_utilisation=0.5, nic_bps_per_edge=1e9)
    result = plan(figures, Demand(listeners=1_200_000), slow_links)
    # 1.2M x 50 kbit/s = 60 Gbit/s over links used to 0.5 Gbit/s: 120 edges, not 30
    assert result.edges.nodes == 120
    assert result.edges.egress_bps_each == pytest.approx(0.5e9)


def test_the_command_prints_the_figures_it_read_and_its_assumptions(
    figures_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--listeners", "1300000", "--figures", str(figures_file)]) == 0
    printed = capsys.readouterr().out
    assert str(figures_file) in printed and "python -m bench --servers townhall" in printed
    assert "target_utilisation = 0.6" in printed and "edges" in printed


def test_missing_figures_and_bad_demands_are_refused_not_guessed(
    tmp_path: Path, figures_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({**FIGURES, "figures": {"listeners_per_core": 1}}))
    with pytest.raises(FiguresError, match="rss_bytes_per_listener"):
        load_figures(partial)
    assert main(["plan", "--listeners", "5", "--figures", str(partial)]) == 2
    assert main(["plan", "--listeners", "5", "--figures", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["plan", "--listeners", "5", "--figures", str(figures_file), "--spaces", "0"]) == 2
    assert "spaces >= 1" in capsys.readouterr().err
