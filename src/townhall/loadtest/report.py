"""The rehearsal's report: one JSON document and one self-contained HTML page.

Why both: the JSON is for scripts and for comparing runs; the HTML page is
what an operator reads before the event and can mail to a colleague - no
JavaScript, no network, every chart inline SVG. The HTML is rendered from
the JSON alone, so any saved report can be re-rendered.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from townhall.loadtest.svg import bar_chart, line_chart, scatter_chart

REPORT_VERSION = 1
JSON_NAME = "report.json"
HTML_NAME = "report.html"
ERROR_KINDS_PLOTTED = 6
"""Most frequent error kinds drawn over time; the bar chart lists every kind."""
CLIENT_CPU_WARNING = 90.0
CLIENT_LAG_WARNING_MS = 100.0
"""Past these the load generator itself was the bottleneck and latencies include its delay."""
SERVER_FIELDS = (("server.cpu_percent", "CPU %"), ("server.loop_lag_ms", "loop lag (ms)"))


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float | None]]:
    return [(r["t"], r.get(key)) for r in rows]


def _server_series(rows: list[dict[str, Any]], key: str, label: str) -> list[Any]:
    """The server's own count of the same thing, when its stats endpoint gives one."""
    if any(r.get(key) is not None for r in rows):
        return [(label, _series(rows, key))]
    return []


def _error_series(rows: list[dict[str, Any]], kind: str) -> list[tuple[float, float | None]]:
    return [(r["t"], float(r.get("errors", {}).get(kind, 0))) for r in rows]


def _fmt_s(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def _p50_p99(latency: dict[str, Any]) -> str:
    return f"{_fmt_s(latency.get('p50'))} / {_fmt_s(latency.get('p99'))}"


def describe_attack(entry: dict[str, Any]) -> str:
    """One line per attack: what the server answered, how fast, and what got through."""
    results = ", ".join(f"{k} {v}" for k, v in sorted(entry["results"].items()))
    parts = [f"{entry['requests']} requests: {results}"]
    for key, label in (("latency_s", "answer"), ("time_to_cut_s", "cut after")):
        if key in entry:
            parts.append(f"{label} p50 / p99 {_p50_p99(entry[key])}")
    for key in ("accepted", "tickets_obtained", "survived", "cut"):
        if key in entry and key not in entry["results"]:
            parts.append(f"{key.replace('_', ' ')} {entry[key]}")
    return "; ".join(parts)


def _headline(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    ttfa = summary["ttfa_s"]
    told = summary["told_vs_actual"]
    good = summary["goodput"]
    share = good.get("share_of_capacity")
    rows: list[tuple[str, Any]] = [
        ("arrivals", summary["arrivals"]),
        ("admitted (got a ticket)", summary["admitted"]),
        ("heard audio", summary["heard_audio"]),
        ("goodput", f"{good['per_s']}/s over {good['window_s']} s ({good['basis']})"),
        ("goodput / capacity",
         f"{share:.0%} of {good['capacity_per_s']}/s" if share is not None else "capacity unknown"),
        ("5xx answers", summary["http_5xx"]),
        ("timeouts", summary["timeouts"]),
        ("connection errors", summary["connection_errors"]),
        ("4xx answers", summary["http_4xx"]),
        ("time to first audio p50 / p90 / p99",
         " / ".join(_fmt_s(ttfa.get(k)) for k in ("p50", "p90", "p99"))),
        ("stream start p50 / p99", _p50_p99(summary["stream_ttfb_s"])),
        ("snapshot answer p50 / p99", _p50_p99(summary["snapshot_latency_s"])),
        ("join answer p50 / p99", _p50_p99(summary["join_latency_s"])),
        ("listeners who waited", told.get("waited", 0)),
    ]
    if told.get("waited"):
        rows += [
            ("waited p50 / p90 / p99", " / ".join(
                _fmt_s(summary["queue_wait_s"].get(k)) for k in ("p50", "p90", "p99"))),
            ("waited: told (mean) → actual (mean)",
             f"{_fmt_s(told['mean_told_s'])} → {_fmt_s(told['mean_actual_s'])}"),
            ("waited: mean error (actual − told)", _fmt_s(told["mean_error_s"])
             if told["mean_error_s"] >= 0 else f"−{_fmt_s(-told['mean_error_s'])}"),
            ("waited: |error| p50 / p90", " / ".join(
                _fmt_s(told["abs_error_s"].get(k)) for k in ("p50", "p90"))),
        ]
    if told.get("still_waiting"):
        rows.append((
            "still waiting at the end: told (mean) / waited so far (mean) / overdue",
            f"{told['still_waiting']} listeners: {_fmt_s(told['still_waiting_mean_told_s'])} / "
            f"{_fmt_s(told['still_waiting_mean_waited_s'])} / {told['still_waiting_overdue']}",
        ))
    rows += [
        ("stream drops / reconnects", f"{summary['stream_drops']} / {summary['reconnects']}"),
        ("live stream received (mean kbps per listener)", summary["mean_stream_kbps"]),
        ("peak streaming / peak waiting",
         f"{summary['peak_streaming']} / {summary['peak_waiting']}"),
        ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(summary["outcomes"].items()))),
    ]
    return rows


def render_html(report: dict[str, Any]) -> str:
    summary = report["summary"]
    rows = report["timeline"]
    config = report["config"]
    charts = [
        line_chart("Arrivals, admissions and first audio per second", [
            ("arrivals/s", _series(rows, "arrivals")),
            ("admitted/s", _series(rows, "admitted")),
            ("first audio/s", _series(rows, "first_audio")),
            *_server_series(rows, "server.admissions_per_s", "server admissions/s"),
        ], y_label="per second"),
        line_chart("Listeners waiting, joining and streaming", [
            ("waiting", _series(rows, "waiting")),
            ("streaming", _series(rows, "streaming")),
            ("joining", _series(rows, "joining")),
            *_server_series(rows, "server.listeners", "server listeners"),
        ], y_label="listeners"),
        line_chart("Time to first audio (listeners who got audio that second)", [
            ("p50", _series(rows, "ttfa_p50")),
            ("p90", _series(rows, "ttfa_p90")),
            ("p99", _series(rows, "ttfa_p99")),
        ], y_label="seconds"),
    ]
    kinds = [k for k, _ in sorted(summary["errors"].items(), key=lambda kv: -kv[1])]
    charts.append(line_chart(
        "Errors per second by kind",
        [(k, _error_series(rows, k)) for k in kinds[:ERROR_KINDS_PLOTTED]],
        y_label="per second",
    ))
    charts.append(bar_chart("Errors by kind (whole run)",
                            sorted(summary["errors"].items(), key=lambda kv: -kv[1])))
    told = report.get("told_vs_actual_samples", [])
    charts.append(scatter_chart(
        "Waiting room: ETA told versus time actually waited", told,
        x_label="told (s)", y_label="actual (s)",
    ))
    for key, label in SERVER_FIELDS:
        if any(r.get(key) is not None for r in rows):
            charts.append(line_chart(f"Server {label}", [(label, _series(rows, key))],
                                     y_label=label))
    if not any(r.get(key) is not None for r in rows for key, _ in SERVER_FIELDS):
        charts.append("<p class=note>The server exposed no CPU or loop-lag figures "
                      f"(tried {escape(', '.join(config.get('stats_paths', [])))}).</p>")
    charts.append(line_chart("Load generator (this process)", [
        ("CPU %", _series(rows, "client.cpu_percent")),
        ("loop lag ms", _series(rows, "client.loop_lag_ms")),
    ]))
    warnings = []
    if summary["client_peak_cpu_percent"] >= CLIENT_CPU_WARNING or (
        summary["client_max_loop_lag_ms"] >= CLIENT_LAG_WARNING_MS
    ):
        warnings.append(
            "The load generator itself fell behind at times (CPU "
            f"{summary['client_peak_cpu_percent']:.0f}%, loop lag "
            f"{summary['client_max_loop_lag_ms']:.0f} ms): latencies include its own delay."
        )
    attack_rows = [(name, describe_attack(entry)) for name, entry in summary["attacks"].items()]
    meta = report["meta"]
    config_rows = [(k, v) for k, v in config.items() if v not in (None, "", 0, "0/s")]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>townhall loadtest – {escape(str(config.get('profile')))} –
 {escape(meta['started_at'])}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 800px; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }}
th, td {{ text-align: left; padding: 3px 10px; border-bottom: 1px solid #eee;
  vertical-align: top; }}
th {{ font-weight: 600; white-space: nowrap; }}
svg {{ display: block; margin: 12px 0 20px; }}
.warn {{ background: #fff3cd; padding: 8px 12px; border-left: 4px solid #e0a800; }}
.note {{ color: #666; }}
</style></head><body>
<h1>townhall loadtest</h1>
<p>{escape(meta['target'])} · space {escape(meta['space'])} · started {escape(meta['started_at'])}
 · {meta['duration_s']:.0f} s · stopped because: {escape(meta['stop_reason'])}</p>
{''.join(f'<p class="warn">{escape(w)}</p>' for w in warnings)}
<h2>Summary</h2>
{_table(_headline(summary))}
{'<h2>Attacks</h2>' + _table(attack_rows) if attack_rows else ''}
<h2>Over time</h2>
{''.join(charts)}
<h2>Settings</h2>
{_table(config_rows)}
</body></html>
"""


def write_report(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into ``directory`` (created); returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / JSON_NAME
    html_path = directory / HTML_NAME
    json_path.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
    html_path.write_text(render_html(report))
    return json_path, html_path


def build_report(
    config: dict[str, Any],
    summary: dict[str, Any],
    timeline: list[dict[str, Any]],
    told_vs_actual: list[tuple[float, float]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The JSON document; ``render_html`` needs nothing else."""
    return {
        "version": REPORT_VERSION,
        "meta": meta,
        "config": config,
        "summary": summary,
        "timeline": timeline,
        "told_vs_actual_samples": [list(pair) for pair in told_vs_actual],
    }
