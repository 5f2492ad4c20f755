"""Rich tables for the results commands (`hil results list`, `hil gate`, `hil compare`, `hil report`).

Every cell and title is a :class:`rich.text.Text`, never markup, and every string goes through the one
sanitiser (:func:`harness.console.sanitize.sanitize`) first: test names, messages and event summaries come from
devices and results files, and must not carry a terminal escape sequence to the user's screen.
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

from harness.console.sanitize import sanitize, sanitize_line
from harness.results.regress import Comparison, MetricVerdict, Verdict
from harness.results.store import RunSummary

VERDICT_STYLE = {
    Verdict.REGRESSED: "bold red",
    Verdict.IMPROVED: "green",
    Verdict.UNCHANGED: "",
    Verdict.NOT_ENOUGH_HISTORY: "dim",
}
OUTCOME_STYLE = {
    "passed": "green",
    "failed": "bold red",
    "error": "bold red",
    "skipped": "yellow",
    "interrupted": "bold yellow",
}


def make_console() -> Console:
    """A console as wide as the terminal, or 160 columns in CI logs (nodeids are long)."""
    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    return Console(width=width, highlight=False, soft_wrap=True)


def fmt(value: float | None, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, or an empty cell."""
    if value is None:
        return ""
    return f"{value:.{digits}g}"


def fmt_pct(value: float | None) -> str:
    """A signed percentage."""
    return "" if value is None else f"{value:+.2f} %"


def cell(value: Any, style: str = "") -> Text:
    """An untrusted value as plain, sanitised text."""
    return Text("" if value is None else sanitize(str(value)), style=style)


def title(text: str) -> Text:
    """A table title as plain, sanitised text (a ``str`` title would be parsed as Rich markup)."""
    return Text(sanitize_line(text))


def line(text: str, style: str = "") -> Text:
    """A line for ``console.print`` as plain, sanitised text."""
    return Text(sanitize(text), style=style)


def runs_table(runs: Sequence[RunSummary]) -> Table:
    """`hil results list`."""
    table = Table(title=title(f"{len(runs)} run(s), newest first"))
    columns = ("run", "started", "branch", "commit", "board", "firmware", "config", "passed", "failed", "skipped")
    for name in (*columns, "baseline"):
        table.add_column(name, overflow="fold")
    for run in runs:
        failed = run.outcomes.get("failed", 0) + run.outcomes.get("error", 0)
        table.add_row(
            cell(run.run_id),
            cell(run.started),
            cell(run.branch),
            cell((run.commit or "")[:10]),
            cell(f"{run.board_kind} {run.board_id}"),
            cell(run.fw_app_version),
            cell(run.config_fingerprint[:12]),
            cell(run.outcomes.get("passed", 0)),
            cell(failed, "bold red" if failed else ""),
            cell(run.outcomes.get("skipped", 0)),
            cell(baseline_state(run.accepted, run.interrupted), "yellow" if run.interrupted else ""),
        )
    return table


def baseline_state(accepted: bool, interrupted: bool) -> str:
    """Whether a run serves as a baseline, and why not."""
    if interrupted:
        return "interrupted (never a baseline)"
    return "accepted" if accepted else "rejected"


def verdict_table(verdicts: Iterable[MetricVerdict], heading: str) -> Table:
    """`hil gate`: one row per metric with the baseline and the change."""
    table = Table(title=title(heading))
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


def compare_table(run_a: str, run_b: str, comparisons: Sequence[Comparison]) -> Table:
    """`hil compare`: metrics of two runs side by side, B against A, with the gate's noise allowance."""
    table = Table(title=title(f"{run_a} (A) vs {run_b} (B)"))
    for name in ("test", "metric", "A", "B", "delta", "delta %", "noise allowance", "B vs A"):
        table.add_column(name, overflow="fold")
    styles = {"better": "green", "worse": "bold red"}
    for c in comparisons:
        allowed = ""
        if c.allowed is not None:
            allowed = f"±{fmt(c.allowed)}" + (f" ({c.n_history} runs)" if c.n_history else " (no history)")
        table.add_row(
            cell(c.nodeid),
            cell(f"{c.metric} ({c.unit}, {c.better} is better)"),
            cell(fmt(c.a)),
            cell(fmt(c.b)),
            cell(fmt(c.delta)),
            cell(fmt_pct(c.delta_pct)),
            cell(allowed),
            cell(c.verdict, styles.get(c.verdict, "")),
        )
    return table


def compare_summary(comparisons: Sequence[Comparison]) -> str:
    """One line: how many metrics are better, worse, within noise, or in one run only."""
    counts: dict[str, int] = {}
    for c in comparisons:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    shown = [f"{counts.get(v, 0)} {v}" for v in ("worse", "better", "within noise")]
    shown += [f"{counts[v]} {v}" for v in ("only in A", "only in B") if counts.get(v)]
    return "B vs A: " + ", ".join(shown) + " (the gate's noise model: each metric's history and minimum effect)"


def run_tables(
    info: dict[str, Any], tests: list[dict[str, Any]], verdicts: Sequence[MetricVerdict], verbose: bool = False
) -> list[Table]:
    """`hil report`: the run, its tests, its metrics with verdicts and its console events.

    Without ``verbose`` only what needs a look: tests that did not pass and metrics that changed (the table
    titles count the rest).
    """
    meta = Table(title=title(f"run {info['run_id']}"), show_header=False)
    meta.add_column("field")
    meta.add_column("value", overflow="fold")
    started = datetime.fromtimestamp(info["started_epoch"], timezone.utc).isoformat(timespec="seconds")
    for label, value in (
        ("started", started),
        ("board", f"{info['board_kind']} {info['board_id']}"),
        ("firmware", f"{info['fw_app']} {info['fw_app_version']} (ELF {info['fw_elf_sha256']})"),
        ("ESP-IDF / esp_smoltcp", f"{info['idf_version']} / {info['esp_smoltcp_version']}"),
        ("commit", " ".join(str(x) for x in (info["commit_sha"], info["commit_url"]) if x)),
        (
            "branch",
            f"{info['branch']}" + (f" (pull request {info['pr']} into {info['base_branch']})" if info["pr"] else ""),
        ),
        ("CI job", info["ci_job_url"]),
        ("firmware git commit", info["fw_git_commit"]),
        ("harness", info["harness_version"]),
        ("host", info["host"]),
        ("config fingerprint", info["config_fingerprint"]),
        ("link", f"{info['link_kind']} {fmt(info['link_rate_mbps'])} Mbit/s"),
        ("baseline", baseline_state(info["accepted"], info["interrupted"])),
    ):
        meta.add_row(cell(label), cell(value))
    shown_tests = tests if verbose else [t for t in tests if t["outcome"] != "passed"]
    passed = sum(t["outcome"] == "passed" for t in tests)
    test_table = Table(
        title=title(f"tests ({len(tests)}, {passed} passed" + (")" if verbose else "; those that did not pass)"))
    )
    for name in ("test", "outcome", "duration s", "message", "console slice"):
        test_table.add_column(name, overflow="fold")
    events = Table(title=title("console events"))
    for name in ("test", "kind", "line", "summary"):
        events.add_column(name, overflow="fold")
    for test in shown_tests:
        test_table.add_row(
            cell(test["nodeid"]),
            cell(test["outcome"], OUTCOME_STYLE.get(test["outcome"], "")),
            cell(fmt(test["duration_s"], 3)),
            cell(test["message"]),
            cell(test["console_slice"]),
        )
    for test in tests:
        for event in test["events"]:
            events.add_row(
                cell(test["nodeid"]),
                cell(event["kind"], "bold red" if event["kind"] != "reset" else ""),
                cell(event["lineno"]),
                cell(event["summary"]),
            )
    changed = [v for v in verdicts if v.judgement.verdict in (Verdict.REGRESSED, Verdict.IMPROVED)]
    metric_title = (
        f"metrics against history ({len(verdicts)})"
        if verbose
        else f"metrics that changed ({len(changed)} of {len(verdicts)}; --verbose for all)"
    )
    tables = [meta, test_table]
    tables.append(verdict_table(verdicts if verbose else changed, metric_title))
    if events.row_count:
        tables.append(events)
    return tables
