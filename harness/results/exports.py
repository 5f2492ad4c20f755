"""Results for CI systems: the gate's markdown summary, a GitLab metrics report, github-action-benchmark and
Bencher (BMF) JSON.

Everything written here comes from results files, so every string is sanitised, and markdown escapes what
GitHub or GitLab would otherwise render (HTML, links, emphasis, table pipes). Links are made only from
``http(s)`` URLs the run itself recorded (its commit and CI job).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.console.sanitize import sanitize_line
from harness.results.regress import MetricVerdict, Verdict

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")
_SAFE_URL = re.compile(r"^https?://[^\s<>()\[\]\"'`]+$")


def md(text: Any) -> str:
    """Untrusted text for a markdown table cell or paragraph: one line, no HTML, no markdown syntax."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(sanitize_line("" if text is None else str(text)), quote=False))


def md_link(text: Any, url: Any) -> str:
    """A markdown link when ``url`` is a plain http(s) URL, else the escaped text alone."""
    if isinstance(url, str) and _SAFE_URL.match(url):
        return f"[{md(text)}]({url})"
    return md(text)


@dataclass(frozen=True)
class GateReport:
    """What `hil gate` decided about one run, for the terminal and for CI summaries."""

    run: dict[str, Any]  # run_id, branch, commit_sha, commit_url, ci_job_url, board_kind, board_id, interrupted
    base_branch: str
    verdicts: Sequence[MetricVerdict]
    min_history: int

    def count(self, verdict: Verdict) -> int:
        """How many metrics got ``verdict``."""
        return sum(v.judgement.verdict is verdict for v in self.verdicts)

    @property
    def regressed(self) -> list[MetricVerdict]:
        """The regressed metrics."""
        return [v for v in self.verdicts if v.judgement.verdict is Verdict.REGRESSED]

    @property
    def judged(self) -> int:
        """Metrics that had enough history to be judged."""
        return len(self.verdicts) - self.count(Verdict.NOT_ENOUGH_HISTORY)

    @property
    def status(self) -> str:
        """``fail`` (a regression), ``not judged`` (history too short for every metric) or ``pass``."""
        if self.regressed:
            return "fail"
        return "pass" if self.judged else "not judged"

    def history_note(self) -> str | None:
        """Plain words when some or all metrics could not be judged for lack of history."""
        short = self.count(Verdict.NOT_ENOUGH_HISTORY)
        if not self.verdicts:
            return "the run recorded no metrics: nothing to judge"
        if not short:
            return None
        most = max((v.judgement.n_history for v in self.verdicts), default=0)
        what = "every metric" if short == len(self.verdicts) else f"{short} of {len(self.verdicts)} metrics"
        return (
            f"history too short to judge {what}: at most {most} earlier passing run(s) of branch "
            f"'{self.base_branch}' on board {self.run['board_kind']} {self.run['board_id']} with this config; "
            f"the gate needs {self.min_history} (regress.min_history)"
        )


def change_text(v: MetricVerdict) -> str:
    """``-3.04 % (allowed ±2.00 %)`` or the absolute form when the median is zero."""
    j = v.judgement
    if j.median is None or j.threshold is None:
        return ""
    if j.median:
        return f"{j.change_pct:+.2f} % (allowed ±{100 * j.threshold / abs(j.median):.2f} %)"
    return f"{j.value - j.median:+.4g} {v.unit} (allowed ±{j.threshold:.4g})"


def verdict_line(v: MetricVerdict) -> str:
    """One line for a judged metric: what, how much, against what."""
    j = v.judgement
    return (
        f"{j.verdict.value}: {v.key.metric} {j.value:.4g} {v.unit} vs median {j.median:.4g} of {j.n_history} runs, "
        f"{change_text(v)} in {v.key.nodeid}"
    )


def markdown_summary(report: GateReport) -> str:
    """The gate's verdict as markdown for `$GITHUB_STEP_SUMMARY`, a pull-request comment or a GitLab MR note."""
    run = report.run
    icon = {"fail": ":x:", "pass": ":white_check_mark:", "not judged": ":warning:"}[report.status]
    headline = {
        "fail": f"{len(report.regressed)} metric(s) regressed",
        "pass": "no regression",
        "not judged": "not judged (history too short)",
    }[report.status]
    commit = md_link((run.get("commit_sha") or "unknown commit")[:12], run.get("commit_url"))
    lines = [
        f"### {icon} hil gate: {headline}",
        "",
        f"Run {md(run['run_id'])} at commit {commit} on branch {md(run.get('branch') or '(none)')}, "
        f"judged against branch {md(report.base_branch or '(none)')} · board {md(run['board_kind'])} "
        f"{md(run['board_id'])}" + (f" · {md_link('CI job', run.get('ci_job_url'))}" if run.get("ci_job_url") else ""),
        "",
        f"{report.judged} metric(s) judged: {report.count(Verdict.REGRESSED)} regressed, "
        f"{report.count(Verdict.IMPROVED)} improved, {report.count(Verdict.UNCHANGED)} unchanged.",
    ]
    if run.get("interrupted"):
        lines += ["", "This run was **interrupted**: its figures are partial and it never serves as a baseline."]
    note = report.history_note()
    if note:
        lines += ["", f"Note: {md(note)}."]
    if report.regressed:
        lines += [
            "",
            "| metric | test | value | baseline median | change | commit |",
            "|---|---|---|---|---|---|",
        ]
        for v in report.regressed:
            j = v.judgement
            lines.append(
                f"| {md(v.key.metric)} | {md(v.key.nodeid)} | {j.value:.4g} {md(v.unit)} | "
                f"{j.median:.4g} ({j.n_history} runs) | {md(change_text(v))} | {commit} |"
            )
    others = [v for v in report.verdicts if v.judgement.verdict is not Verdict.REGRESSED]
    if others:
        lines += [
            "",
            f"<details><summary>{len(others)} other metric(s)</summary>",
            "",
            "| metric | test | value | verdict | change |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {md(v.key.metric)} | {md(v.key.nodeid)} | {v.judgement.value:.4g} {md(v.unit)} | "
            f"{md(v.judgement.verdict.value)} | {md(change_text(v))} |"
            for v in others
        ]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return sanitize_line(value).replace("\\", "\\\\").replace('"', '\\"')


def _metric_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_:]", "_", name)
    return cleaned if re.match(r"[A-Za-z_:]", cleaned) else f"_{cleaned}"


def gitlab_metrics(tests: Sequence[dict[str, Any]]) -> str:
    """A GitLab metrics report (OpenMetrics text: ``name{test="..."} value``, one per line, ``# EOF`` last)."""
    lines = [
        f'{_metric_name(m["name"])}{{test="{_label(t["nodeid"])}"}} {float(m["value"])!r}'
        for t in tests
        for m in t["metrics"]
    ]
    return "\n".join([*lines, "# EOF"]) + "\n"


def github_benchmark(tests: Sequence[dict[str, Any]], better: str) -> str:
    """github-action-benchmark's custom format (``customBiggerIsBetter`` / ``customSmallerIsBetter``): the
    metrics whose ``better`` is ``better``, as ``[{"name", "unit", "value", "extra"}]``."""
    entries = [
        {
            "name": sanitize_line(f"{t['nodeid']} {m['name']}"),
            "unit": sanitize_line(m["unit"]),
            "value": m["value"],
            "extra": sanitize_line(f"outcome: {t['outcome']}"),
        }
        for t in tests
        for m in t["metrics"]
        if m["better"] == better
    ]
    return json.dumps(entries, indent=2) + "\n"


def bencher_bmf(tests: Sequence[dict[str, Any]]) -> str:
    """Bencher Metric Format: ``{benchmark (test): {measure (metric): {"value": x}}}``."""
    bmf: dict[str, dict[str, dict[str, float]]] = {}
    for t in tests:
        for m in t["metrics"]:
            measure = re.sub(r"[^a-z0-9]+", "-", sanitize_line(m["name"]).lower()).strip("-")[:64] or "metric"
            bmf.setdefault(sanitize_line(t["nodeid"])[:1024], {})[measure] = {"value": m["value"]}
    return json.dumps(bmf, indent=2) + "\n"
