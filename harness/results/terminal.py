"""Rich tables for the results commands (`hil results list`, `hil gate`, `hil compare`, `hil report`).

Every cell is a :class:`rich.text.Text`, never markup: test messages and event summaries come from the device.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.results.regress import MetricVerdict, Verdict
from harness.results.store import RunSummary

VERDICT_STYLE = {
    Verdict.REGRESSED: "bold red",
    Verdict.IMPROVED: "green",
    Verdict.UNCHANGED: "",
    Verdict.NOT_ENOUGH_HISTORY: "dim",
}
OUTCOME_STYLE = {"passed": "green", "failed": "bold red", "error": "bold red", "skipped": "yellow"}


def make_console() -> Console:
    """A console as wide as the terminal, or 160 columns in CI logs (nodeids are long)."""
    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    return Console(width=width, highlight=False)


def fmt(value: float | None, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, or an empty cell."""
    if value is None:
        return ""
    return f"{value:.{digits}g}"


def fmt_pct(value: float | None) -> str:
    """A signed percentage."""
    return "" if value is None else f"{value:+.2f} %"


def cell(value: Any, style: str = "") -> Text:
    """An untrusted value as plain text."""
    return Text("" if value is None else str(value), style=style)


def runs_table(runs: Sequence[RunSummary]) -> Table:
    """`hil results list`."""
    table = Table(title=f"{len(runs)} run(s), newest first")
    for name in ("run", "started", "board", "firmware", "config", "passed", "failed", "skipped", "baseline"):
        table.add_column(name, overflow="fold")
    for run in runs:
        failed = run.outcomes.get("failed", 0) + run.outcomes.get("error", 0)
        table.add_row(
            cell(run.run_id),
            cell(run.started),
            cell(f"{run.board_kind} {run.board_id}"),
            cell(run.fw_app_version),
            cell(run.config_fingerprint[:12]),
            cell(run.outcomes.get("passed", 0)),
            cell(failed, "bold red" if failed else ""),
            cell(run.outcomes.get("skipped", 0)),
            cell("accepted" if run.accepted else "rejected"),
        )
    return table


def verdict_table(verdicts: Iterable[MetricVerdict], title: str) -> Table:
    """`hil gate`: one row per metric with the baseline and the change."""
    table = Table(title=title)
    for name in ("test", "metric", "value", "baseline median", "change", "allowed", "runs", "verdict"):
        table.add_column(name, overflow="fold")
    for v in verdicts:
        j = v.judgement
        allowed = "" if j.threshold is None or not j.median else f"±{100 * j.threshold / abs(j.median):.2f} %"
        table.add_row(
            cell(v.key.nodeid),
            cell(f"{v.key.metric} ({v.better} is better)"),
            cell(f"{fmt(j.value)} {v.unit}"),
            cell(fmt(j.median)),
            cell(fmt_pct(j.change_pct)),
            cell(allowed),
            cell(j.n_history),
            cell(j.verdict.value, VERDICT_STYLE[j.verdict]),
        )
    return table


def compare_table(run_a: str, run_b: str, tests_a: list[dict[str, Any]], tests_b: list[dict[str, Any]]) -> Table:
    """`hil compare`: metrics of two runs side by side with their deltas."""

    def by_key(tests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(t["nodeid"], m["name"]): {**m, "outcome": t["outcome"]} for t in tests for m in t["metrics"]}

    a, b = by_key(tests_a), by_key(tests_b)
    table = Table(title=f"{run_a} (A) vs {run_b} (B)")
    for name in ("test", "metric", "A", "B", "delta", "delta %", "B vs A"):
        table.add_column(name, overflow="fold")
    for key in sorted(set(a) | set(b)):
        ma, mb = a.get(key), b.get(key)
        metric = ma or mb
        assert metric is not None
        delta = pct = None
        judgement, style = "", ""
        if ma and mb:
            delta = mb["value"] - ma["value"]
            pct = 100 * delta / abs(ma["value"]) if ma["value"] else None
            gain = delta if metric["better"] == "higher" else -delta
            judgement, style = ("better", "green") if gain > 0 else ("worse", "red") if gain < 0 else ("same", "")
        else:
            judgement = "only in A" if ma else "only in B"
        table.add_row(
            cell(key[0]),
            cell(f"{key[1]} ({metric['unit']})"),
            cell(fmt(ma and ma["value"])),
            cell(fmt(mb and mb["value"])),
            cell(fmt(delta)),
            cell(fmt_pct(pct)),
            cell(judgement, style),
        )
    return table


def run_tables(info: dict[str, Any], tests: list[dict[str, Any]], verdicts: Sequence[MetricVerdict]) -> list[Table]:
    """`hil report`: the run, its tests, its metrics with verdicts and its console events."""
    meta = Table(title=f"run {info['run_id']}", show_header=False)
    meta.add_column("field")
    meta.add_column("value", overflow="fold")
    started = datetime.fromtimestamp(info["started_epoch"], timezone.utc).isoformat(timespec="seconds")
    for label, value in (
        ("started", started),
        ("board", f"{info['board_kind']} {info['board_id']}"),
        ("firmware", f"{info['fw_app']} {info['fw_app_version']} (ELF {info['fw_elf_sha256']})"),
        ("ESP-IDF / esp_smoltcp", f"{info['idf_version']} / {info['esp_smoltcp_version']}"),
        ("firmware git commit", info["fw_git_commit"]),
        ("harness", info["harness_version"]),
        ("host", info["host"]),
        ("config fingerprint", info["config_fingerprint"]),
        ("link", f"{info['link_kind']} {fmt(info['link_rate_mbps'])} Mbit/s"),
        ("baseline", "accepted" if info["accepted"] else "rejected"),
    ):
        meta.add_row(cell(label), cell(value))
    test_table = Table(title="tests")
    for name in ("test", "outcome", "duration s", "message", "console slice"):
        test_table.add_column(name, overflow="fold")
    events = Table(title="console events")
    for name in ("test", "kind", "line", "summary"):
        events.add_column(name, overflow="fold")
    for test in tests:
        test_table.add_row(
            cell(test["nodeid"]),
            cell(test["outcome"], OUTCOME_STYLE.get(test["outcome"], "")),
            cell(fmt(test["duration_s"], 3)),
            cell(test["message"]),
            cell(test["console_slice"]),
        )
        for event in test["events"]:
            events.add_row(
                cell(test["nodeid"]),
                cell(event["kind"], "bold red" if event["kind"] != "reset" else ""),
                cell(event["lineno"]),
                cell(event["summary"]),
            )
    tables = [meta, test_table, verdict_table(verdicts, "metrics against history")]
    if events.row_count:
        tables.append(events)
    return tables
