"""`hil dashboard --out DIR`: a static results site that works from file:// and GitHub Pages, offline.

Pages: ``index.html`` (latest verdict per board + metric with sparklines, recent runs), ``runs.html`` (every
run), ``metrics/<series>.html`` (time series with baseline band and marked regressions), ``runs/<run>.html``
(drill-down: tests, outcomes, metrics, counters, console events, console slices) and ``latency.html``
(RTT/latency distributions). Every asset is local (``assets/``); charts are drawn by ``assets/charts.js``
from a JSON block in each page.

All text that came from a device, a log or a results file is escaped (``html.escape`` for markup, a JSON block
with ``<``, ``>`` and ``&`` escaped for the charts), and a Content-Security-Policy forbids inline script and
any network access.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.results.regress import Point, SeriesKey, ThresholdPolicy, Verdict, build_series
from harness.results.store import RunSummary, Store

ASSETS = Path(__file__).resolve().parent / "assets"
MARKER = ".hil-dashboard"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)
VERDICT_CODE = {Verdict.REGRESSED: "R", Verdict.IMPROVED: "I", Verdict.UNCHANGED: "U", Verdict.NOT_ENOUGH_HISTORY: "N"}
VERDICT_CLASS = {
    Verdict.REGRESSED: "regressed",
    Verdict.IMPROVED: "improved",
    Verdict.UNCHANGED: "unchanged",
    Verdict.NOT_ENOUGH_HISTORY: "nohistory",
}
LATENCY_UNITS = {"ms", "us", "µs", "s", "ns"}
BAD_OUTCOMES = ("failed", "error", "interrupted")
SAFE_URL = re.compile(r"^https?://[^\s<>()\[\]\"'`]+$")
SPARK_POINTS = 60
PERCENTILE_NAME = re.compile(r"^(?P<base>.+?)_p(?P<p>\d{1,3}(?:\.\d+)?)(?P<suffix>_[A-Za-z]+)?$")


def esc(value: Any) -> str:
    """HTML-escape anything (None becomes empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def slug(text: str, unique: str | None = None) -> str:
    """A file name safe on every file system and in URLs: readable ``text`` plus a hash of ``unique`` (or text)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "x"
    return f"{readable}-{hashlib.sha256((unique or text).encode()).hexdigest()[:10]}"


def json_block(data: Any) -> str:
    """JSON safe inside a <script type="application/json"> element (no way to close the element)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def fmt(value: float | None) -> str:
    """Four significant digits."""
    return "" if value is None else f"{value:.4g}"


def fmt_time(epoch: float) -> str:
    """UTC time to the minute."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M")


def badge(verdict: Verdict | str) -> str:
    """A coloured verdict or outcome label."""
    if isinstance(verdict, Verdict):
        return f'<span class="badge {VERDICT_CLASS[verdict]}">{esc(verdict.value)}</span>'
    return f'<span class="badge {esc(verdict)}">{esc(verdict)}</span>'


def is_latency(key: SeriesKey, points: Sequence[Point]) -> bool:
    """Latency-like series: lower is better and a time unit, or named after RTT/latency."""
    unit = points[-1].unit
    name = key.metric.lower()
    return points[-1].better == "lower" and (unit in LATENCY_UNITS or "rtt" in name or "latency" in name)


@dataclass
class Site:
    """Builds the pages of one dashboard into ``out``."""

    store: Store
    out: Path
    title: str
    series: dict[SeriesKey, list[Point]]
    runs: list[RunSummary]
    commit_urls: dict[str, str | None]

    # -- layout ----------------------------------------------------------------------------------------------
    def page(self, path: str, heading: str, body: str, charts: dict[str, Any] | None = None) -> None:
        depth = path.count("/")
        root = "../" * depth
        branches = "".join(
            f'<a href="{root}{self.branch_href(branch)}">branch {esc(branch or "(none)")}</a>'
            for branch in self.branches()
        )
        nav = (
            f'<nav><a href="{root}index.html">Overview</a><a href="{root}runs.html">Runs</a>'
            f'<a href="{root}latency.html">Latency</a>{branches}</nav>'
        )
        document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(heading)} - {esc(self.title)}</title>
<link rel="stylesheet" href="{root}assets/style.css">
<script src="{root}assets/charts.js" defer></script>
</head>
<body>
<header><h1>{esc(self.title)}</h1>{nav}</header>
<main>
<pre id="hil-js-errors" hidden></pre>
<h2>{esc(heading)}</h2>
{body}
</main>
<script type="application/json" id="hil-data">{json_block({"charts": charts or {}})}</script>
</body>
</html>
"""
        target = self.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(document, encoding="utf-8")

    def metric_href(self, key: SeriesKey, root: str = "") -> str:
        return f"{root}metrics/{slug(key.metric + '-' + key.nodeid.rpartition('::')[2], repr(key))}.html"

    def run_href(self, run_id: str, root: str = "") -> str:
        return f"{root}runs/{slug(run_id)}.html"

    def branch_href(self, branch: str, root: str = "") -> str:
        return f"{root}branches/{slug(branch or 'none', 'branch:' + branch)}.html"

    def branches(self) -> list[str]:
        """Branches with runs, the most recently run first."""
        latest: dict[str, float] = {}
        for run in self.runs:
            latest[run.branch] = max(latest.get(run.branch, 0.0), run.started_epoch)
        return sorted(latest, key=lambda b: -latest[b])

    def commit_link(self, commit: str | None, url: str | None) -> str:
        """A short commit id, linked to its page when the run recorded an http(s) URL for it."""
        if not commit:
            return '<span class="muted">unknown</span>'
        if url and SAFE_URL.match(url):
            return f'<a class="commit" href="{esc(url)}" rel="noopener noreferrer">{esc(commit[:10])}</a>'
        return f"<code>{esc(commit[:10])}</code>"

    # -- pages -----------------------------------------------------------------------------------------------
    def overview(self) -> None:
        latest_verdicts = [points[-1].judgement.verdict for points in self.series.values()]
        latest_runs = self.latest_runs()
        failing = [
            (run, test)
            for run in latest_runs
            for test in self.store.tests(run.run_id)
            if test["outcome"] in BAD_OUTCOMES
        ]
        stats = "".join(
            f'<div class="card stat {cls}"><div class="n">{n}</div><div class="muted">{esc(label)}</div></div>'
            for n, label, cls in (
                (len(failing), "failing tests (latest run of each branch, board and config)", "bad"),
                (latest_verdicts.count(Verdict.REGRESSED), "regressed (latest run of each series)", "bad"),
                (latest_verdicts.count(Verdict.IMPROVED), "improved (latest run of each series)", "good"),
                (len(self.runs), "runs stored", ""),
                (len(self.series), "metric series", ""),
            )
        )
        charts: dict[str, Any] = {}
        body = [f'<div class="cards">{stats}</div>', self.attention(failing)]
        body.append("<h2>Every metric (latest run of each series)</h2>" + self.series_table(list(self.series), charts))
        if not self.series:
            body.append(
                '<p class="muted">No metrics stored yet: import results with '
                "<code>hil results import FILE...</code>.</p>"
            )
        body.append("<h2>Recent runs</h2>" + self.runs_table(self.runs[:20]))
        self.page("index.html", "Overview", "\n".join(body), charts)

    def latest_runs(self) -> list[RunSummary]:
        """The newest run of each branch + board + config."""
        latest: dict[tuple[str, str, str, str], RunSummary] = {}
        for run in self.runs:  # newest first
            latest.setdefault((run.branch, run.board_kind, run.board_id, run.config_fingerprint), run)
        return list(latest.values())

    def attention(self, failing: list[tuple[RunSummary, dict[str, Any]]], root: str = "") -> str:
        """What needs a look first: failing tests of the latest runs, then regressed series."""
        parts = ['<section class="attention"><h2>Needs attention</h2>']
        if failing:
            rows = "".join(
                f'<tr class="regressed"><td>{esc(run.branch or "(none)")}</td><td class="id">{esc(test["nodeid"])}</td>'
                f'<td>{badge(test["outcome"])}</td><td><pre class="detail">{esc(test["message"][:400])}</pre></td>'
                f'<td class="id"><a href="{self.run_href(run.run_id, root)}">{esc(run.run_id)}</a></td>'
                f"<td>{self.commit_link(run.commit, run.commit_url)}</td></tr>"
                for run, test in failing
            )
            parts.append(
                f"<h3>Failing tests ({len(failing)})</h3><table><thead><tr><th>branch</th><th>test</th><th>outcome</th>"
                f"<th>message</th><th>run</th><th>commit</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        regressed = [key for key, points in self.series.items() if points[-1].judgement.verdict is Verdict.REGRESSED]
        if regressed:
            rows = "".join(
                f'<tr class="regressed"><td>{esc(key.branch or "(none)")}</td><td class="id">{esc(key.nodeid)}</td>'
                f'<td><a href="{self.metric_href(key, root)}">{esc(key.metric)}</a></td>'
                f'<td class="num">{fmt(last.value)} {esc(last.unit)}</td>'
                f'<td class="num">{_pct(last.judgement.change_pct)}</td>'
                f"<td>{self.commit_link(last.commit, self.commit_urls.get(last.run_id))}</td></tr>"
                for key, last in ((key, self.series[key][-1]) for key in sorted(regressed, key=repr))
            )
            parts.append(
                f"<h3>Regressed metrics ({len(regressed)})</h3><table><thead><tr><th>branch</th><th>test</th>"
                f"<th>metric</th><th>latest</th><th>change</th><th>commit</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        if not failing and not regressed:
            parts.append('<p class="muted">Nothing: the latest runs passed and no metric regressed.</p>')
        return "".join(parts) + "</section>"

    def series_table(self, keys: list[SeriesKey], charts: dict[str, Any], root: str = "") -> str:
        """Every series' latest verdict: regressions first, sortable by any column, filterable by text and verdict."""
        order = {Verdict.REGRESSED: 0, Verdict.IMPROVED: 1, Verdict.NOT_ENOUGH_HISTORY: 2, Verdict.UNCHANGED: 3}
        table_id = f"series-{len(charts)}"
        rows = []
        for key in sorted(
            keys, key=lambda k: (order[self.series[k][-1].judgement.verdict], k.branch, k.nodeid, k.metric)
        ):
            points = self.series[key]
            last = points[-1]
            chart_id = f"s{len(charts)}"
            tail = points[-SPARK_POINTS:]
            charts[chart_id] = {"v": [p.value for p in tail], "r": [VERDICT_CODE[p.judgement.verdict] for p in tail]}
            change = last.judgement.change_pct
            verdict = last.judgement.verdict
            rows.append(
                f'<tr class="{VERDICT_CLASS[verdict]}" data-verdict="{VERDICT_CLASS[verdict]}">'
                f'<td data-value="{order[verdict]}">{badge(verdict)}</td>'
                f"<td>{esc(key.branch or '(none)')}</td>"
                f'<td class="id">{esc(key.board_kind)} {esc(key.board_id)} · {esc(key.config_fingerprint[:8])}</td>'
                f'<td class="id">{esc(key.nodeid)}</td>'
                f'<td><a href="{self.metric_href(key, root)}">{esc(key.metric)}</a></td>'
                f'<td class="num" data-value="{last.value!r}">{fmt(last.value)} {esc(last.unit)}</td>'
                f'<td class="num" data-value="{"" if change is None else repr(change)}">{_pct(change)}</td>'
                f'<td><svg class="spark" data-chart="sparkline" data-key="{chart_id}" role="img" '
                f'aria-label="last {len(tail)} runs"></svg></td>'
                f"<td>{self.commit_link(last.commit, self.commit_urls.get(last.run_id))}</td>"
                f'<td class="id" data-value="{last.started_epoch!r}"><a href="{self.run_href(last.run_id, root)}">'
                f"{esc(last.run_id)}</a></td></tr>"
            )
        options = "".join(f'<option value="{VERDICT_CLASS[v]}">{esc(v.value)}</option>' for v in order)
        return (
            f'<div class="filters" data-table="{table_id}"><input type="search" class="filter-text" '
            'placeholder="filter: test, metric, branch, board..." aria-label="filter rows">'
            f'<select class="filter-verdict" aria-label="verdict"><option value="">every verdict</option>{options}'
            '</select><span class="muted filter-count"></span></div>'
            f'<table class="sortable" id="{table_id}"><thead><tr><th>verdict</th><th>branch</th><th>board · config</th>'
            "<th>test</th><th>metric</th><th>latest</th><th>vs baseline</th><th>history</th><th>commit</th>"
            f"<th>latest run</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )

    def branch_pages(self) -> None:
        for branch in self.branches():
            charts: dict[str, Any] = {}
            keys = [key for key in self.series if key.branch == branch]
            runs = [run for run in self.runs if run.branch == branch]
            latest = [run for run in self.latest_runs() if run.branch == branch]
            failing = [(r, t) for r in latest for t in self.store.tests(r.run_id) if t["outcome"] in BAD_OUTCOMES]
            body = [
                self.attention(failing, "../"),
                f"<h2>Metrics ({len(keys)})</h2>" + self.series_table(keys, charts, "../"),
                f"<h2>Runs ({len(runs)})</h2>" + self.runs_table(runs, "../"),
            ]
            self.page(self.branch_href(branch), f"Branch {branch or '(none)'}", "\n".join(body), charts)

    def runs_table(self, runs: Iterable[RunSummary], root: str = "") -> str:
        rows = []
        for run in runs:
            failed = run.outcomes.get("failed", 0) + run.outcomes.get("error", 0)
            state = "interrupted" if run.interrupted else ("accepted" if run.accepted else "rejected")
            rows.append(
                f'<tr class="{"regressed" if failed or run.interrupted else ""}">'
                f'<td class="id"><a href="{self.run_href(run.run_id, root)}">{esc(run.run_id)}</a></td>'
                f"<td>{esc(run.started)}</td><td>{esc(run.branch or '(none)')}</td>"
                f"<td>{self.commit_link(run.commit, run.commit_url)}</td>"
                f"<td>{esc(run.board_kind)} <code>{esc(run.board_id)}</code></td>"
                f"<td>{esc(run.fw_app_version)}</td><td><code>{esc(run.config_fingerprint[:12])}</code></td>"
                f'<td class="num">{run.outcomes.get("passed", 0)}</td>'
                f'<td class="num">{badge("failed") + " " if failed else ""}{failed}</td>'
                f'<td class="num">{run.outcomes.get("skipped", 0)}</td>'
                f"<td>{badge(state) if run.interrupted else esc(state)}</td></tr>"
            )
        return (
            '<table class="sortable"><thead><tr><th>run</th><th>started</th><th>branch</th><th>commit</th>'
            "<th>board</th><th>firmware</th><th>config</th><th>passed</th><th>failed</th><th>skipped</th><th>baseline</th></tr>"
            "</thead><tbody>" + "".join(rows) + "</tbody></table>"
        )

    def all_runs(self) -> None:
        self.page("runs.html", f"All runs ({len(self.runs)})", self.runs_table(self.runs))

    def metric_pages(self) -> None:
        for key, points in self.series.items():
            bands = [p.judgement.band for p in points]
            chart = {
                "t": [p.started_epoch for p in points],
                "v": [p.value for p in points],
                "lo": [b[0] if b else None for b in bands],
                "hi": [b[1] if b else None for b in bands],
                "m": [p.judgement.median for p in points],
                "r": [VERDICT_CODE[p.judgement.verdict] for p in points],
                "id": [p.run_id for p in points],
                "href": [self.run_href(p.run_id, "../") for p in points],
                "c": [(p.commit or "")[:8] for p in points],
                "cu": [u if u and SAFE_URL.match(u) else "" for u in (self.commit_urls.get(p.run_id) for p in points)],
                "unit": points[-1].unit,
                "better": points[-1].better,
            }
            flagged = [p for p in points if p.judgement.verdict in (Verdict.REGRESSED, Verdict.IMPROVED)]
            rows = "".join(
                f'<tr class="{VERDICT_CLASS[p.judgement.verdict]}"><td>{fmt_time(p.started_epoch)}</td>'
                f"<td>{self.commit_link(p.commit, self.commit_urls.get(p.run_id))}</td>"
                f'<td class="id"><a href="{self.run_href(p.run_id, "../")}">{esc(p.run_id)}</a></td>'
                f'<td class="num">{fmt(p.value)}</td><td class="num">{fmt(p.judgement.median)}</td>'
                f'<td class="num">{_pct(p.judgement.change_pct)}</td><td>{badge(p.judgement.verdict)}</td></tr>'
                for p in reversed(flagged)
            )
            body = (
                f"<p>Test <code>{esc(key.nodeid)}</code> on branch <code>{esc(key.branch or '(none)')}</code>, "
                f"{esc(key.board_kind)} <code>{esc(key.board_id)}</code>, "
                f"config <code>{esc(key.config_fingerprint or '(none)')}</code>; {len(points)} runs, "
                f"{esc(points[-1].better)} is better.</p>"
                '<div class="card"><p class="legend"><span><i class="sw value"></i>value</span>'
                '<span><i class="sw regressed"></i>regressed</span>'
                '<span><i class="sw improved"></i>improved</span>'
                "<span>shaded: baseline band (median of the previous accepted runs ± allowed change)</span>"
                "<span>x axis: commits, oldest first (drag across the chart to zoom, double-click to reset)</span>"
                '<button type="button" class="zoom-reset" hidden>reset zoom</button></p>'
                '<svg class="chart" data-chart="timeseries" data-key="ts" role="img" '
                f'aria-label="{esc(key.metric)} over time"></svg></div>'
                f"<h2>Changes ({len(flagged)})</h2>"
                + (
                    "<table><thead><tr><th>time</th><th>commit</th><th>run</th><th>value</th><th>baseline median</th>"
                    "<th>change</th>"
                    f"<th>verdict</th></tr></thead><tbody>{rows}</tbody></table>"
                    if flagged
                    else '<p class="muted">No run left the baseline band.</p>'
                )
            )
            self.page(self.metric_href(key), f"{key.metric} ({points[-1].unit})", body, {"ts": chart})

    def latency_page(self) -> None:
        charts: dict[str, Any] = {}
        body = [
            '<p class="muted">Distribution of each latency metric over all stored runs (latest run marked), '
            "and percentile profiles of the latest run against the baseline medians.</p>"
        ]
        cards = []
        profiles: dict[tuple[str, str, str, str, str], dict[float, SeriesKey]] = defaultdict(dict)
        for key, points in sorted(self.series.items(), key=lambda item: repr(item[0])):
            if not is_latency(key, points):
                continue
            chart_id = f"h{len(charts)}"
            charts[chart_id] = {"v": [p.value for p in points], "latest": points[-1].value, "unit": points[-1].unit}
            cards.append(
                f'<div class="card"><h3><a href="{self.metric_href(key)}">{esc(key.metric)}</a></h3>'
                f'<div class="muted id">{esc(key.nodeid)} · {esc(key.board_id)}</div>'
                f'<svg class="small" data-chart="histogram" data-key="{chart_id}" role="img"></svg></div>'
            )
            match = PERCENTILE_NAME.match(key.metric)
            if match:
                group = (
                    key.board_kind,
                    key.board_id,
                    key.config_fingerprint,
                    key.nodeid,
                    match["base"] + (match["suffix"] or ""),
                )
                profiles[group][float(match["p"])] = key
        for group, by_percentile in sorted(profiles.items()):
            if len(by_percentile) < 2:
                continue
            keys = [by_percentile[p] for p in sorted(by_percentile)]
            chart_id = f"p{len(charts)}"
            charts[chart_id] = {
                "p": [f"{p:g}" for p in sorted(by_percentile)],
                "latest": [self.series[k][-1].value for k in keys],
                "baseline": [self.series[k][-1].judgement.median for k in keys],
                "unit": self.series[keys[0]][-1].unit,
            }
            cards.append(
                f'<div class="card"><h3>{esc(group[4])} percentiles</h3>'
                f'<div class="muted id">{esc(group[3])} · {esc(group[1])}</div>'
                '<p class="legend"><span>solid: latest run</span><span>dashed: baseline median</span></p>'
                f'<svg class="small" data-chart="profile" data-key="{chart_id}" role="img"></svg></div>'
            )
        body.append(
            f'<div class="grid2">{"".join(cards)}</div>'
            if cards
            else '<p class="muted">No latency metrics stored (lower-is-better metrics in ms, us or s).</p>'
        )
        self.page("latency.html", "Latency and RTT distributions", "\n".join(body), charts)

    def run_pages(self) -> None:
        by_run: dict[str, dict[tuple[str, str], Point]] = defaultdict(dict)
        for key, points in self.series.items():
            for point in points:
                by_run[point.run_id][(key.nodeid, key.metric)] = point
        for run in self.runs:
            self.run_page(run, by_run.get(run.run_id, {}))

    def run_page(self, run: RunSummary, verdicts: dict[tuple[str, str], Point]) -> None:
        info = self.store.run_info(run.run_id)
        tests = self.store.tests(run.run_id)
        source = Path(info["source_dir"]) if info["source_dir"] else None
        meta = [
            ("started", info["started"]),
            ("finished", info["finished"]),
            ("board", f"{info['board_kind']} {info['board_id']} (MAC {info['board_mac']})"),
            ("firmware", f"{info['fw_app']} {info['fw_app_version']}, chip {info['fw_chip']} {info['fw_chip_rev']}"),
            ("ELF SHA-256", info["fw_elf_sha256"]),
            (
                "branch",
                info["branch"] + (f" (pull request {info['pr']} into {info['base_branch']})" * bool(info["pr"])),
            ),
            ("firmware git commit", info["fw_git_commit"]),
            ("ESP-IDF", info["idf_version"]),
            ("esp_smoltcp", info["esp_smoltcp_version"]),
            ("harness", info["harness_version"]),
            ("host", info["host"]),
            ("config fingerprint", info["config_fingerprint"]),
            ("link", f"{info['link_kind']} {fmt(info['link_rate_mbps'])} Mbit/s"),
            (
                "baseline",
                "interrupted (never used as a baseline)"
                if info["interrupted"]
                else "accepted"
                if info["accepted"]
                else "rejected (not used as a baseline)",
            ),
        ]
        log_link = self.copy_log(run.run_id, source, info["console_log"])
        meta_rows = "".join(f'<tr><th>{esc(k)}</th><td class="id">{esc(v)}</td></tr>' for k, v in meta)
        meta_rows += f"<tr><th>commit</th><td>{self.commit_link(info['commit_sha'], info['commit_url'])}</td></tr>"
        if info["ci_job_url"] and SAFE_URL.match(info["ci_job_url"]):
            meta_rows += (
                f'<tr><th>CI job</th><td><a href="{esc(info["ci_job_url"])}" rel="noopener noreferrer">'
                f"{esc(info['ci_job_url'])}</a></td></tr>"
            )
        meta_rows += f"<tr><th>console log</th><td>{log_link}</td></tr>"
        test_rows, metric_rows, event_rows, counter_rows = [], [], [], []
        tests = sorted(tests, key=lambda t: t["outcome"] not in BAD_OUTCOMES)  # failing tests first, stable
        for test in tests:
            slice_link = self.copy_log(run.run_id, source, test["console_slice"])
            test_rows.append(
                f'<tr class="{"regressed" if test["outcome"] in BAD_OUTCOMES else ""}">'
                f'<td class="id">{esc(test["nodeid"])}</td><td>{badge(test["outcome"])}</td>'
                f'<td class="num">{fmt(test["duration_s"])}</td><td><pre class="detail">{esc(test["message"])}</pre>'
                f"</td><td>{slice_link}</td></tr>"
            )
            for metric in test["metrics"]:
                point = verdicts.get((test["nodeid"], metric["name"]))
                verdict = point.judgement if point else None
                series_key = SeriesKey(
                    info["board_kind"],
                    info["board_id"],
                    info["config_fingerprint"],
                    test["nodeid"],
                    metric["name"],
                    info["branch"],
                )
                metric_rows.append(
                    f'<tr class="{VERDICT_CLASS[verdict.verdict] if verdict else ""}">'
                    f'<td class="id">{esc(test["nodeid"])}</td>'
                    f'<td><a href="{self.metric_href(series_key, "../")}">{esc(metric["name"])}</a></td>'
                    f'<td class="num">{fmt(metric["value"])} {esc(metric["unit"])}</td>'
                    f'<td class="num">{fmt(verdict.median if verdict else None)}</td>'
                    f'<td class="num">{_pct(verdict.change_pct if verdict else None)}</td>'
                    f"<td>{badge(verdict.verdict) if verdict else ''}</td></tr>"
                )
            for event in test["events"]:
                detail = json.dumps(event["detail"], indent=1, sort_keys=True)
                event_rows.append(
                    f'<tr class="{"regressed" if event["kind"] in ("panic", "abort", "wdt", "brownout") else ""}">'
                    f'<td class="id">{esc(test["nodeid"])}</td><td>{badge(event["kind"])}</td>'
                    f'<td class="num">{esc(event["lineno"])}</td><td>{esc(event["summary"])}'
                    f'<details><summary>details</summary><pre class="detail">{esc(detail)}</pre></details></td>'
                    f"<td>{slice_link}</td></tr>"
                )
            if test["counters"]:
                counters = ", ".join(f"{esc(name)} {delta:+d}" for name, delta in test["counters"].items())
                counter_rows.append(f'<tr><td class="id">{esc(test["nodeid"])}</td><td>{counters}</td></tr>')
        body = [
            f'<table class="card">{meta_rows}</table>',
            f"<h2>Tests ({len(tests)})</h2><table><thead><tr><th>test</th><th>outcome</th><th>duration s</th>"
            f"<th>message</th><th>console slice</th></tr></thead><tbody>{''.join(test_rows)}</tbody></table>",
        ]
        body.append(
            f"<h2>Console events ({len(event_rows)})</h2>"
            + (
                "<table><thead><tr><th>test</th><th>kind</th><th>line</th><th>summary</th><th>console slice</th></tr>"
                f"</thead><tbody>{''.join(event_rows)}</tbody></table>"
                if event_rows
                else '<p class="muted">No panic, abort, watchdog or reset seen on the console.</p>'
            )
        )
        body.append(
            "<h2>Metrics</h2>"
            + (
                "<table><thead><tr><th>test</th><th>metric</th><th>value</th><th>baseline median</th><th>change</th>"
                f"<th>verdict</th></tr></thead><tbody>{''.join(metric_rows)}</tbody></table>"
                if metric_rows
                else '<p class="muted">This run recorded no metrics.</p>'
            )
        )
        if counter_rows:
            body.append(
                "<h2>Counter deltas</h2><table><thead><tr><th>test</th><th>HIL_STATS deltas</th></tr></thead>"
                f"<tbody>{''.join(counter_rows)}</tbody></table>"
            )
        self.page(self.run_href(run.run_id), f"Run {run.run_id}", "\n".join(body))

    def copy_log(self, run_id: str, source: Path | None, relative: str | None) -> str:
        """Copy a console log or slice into the site (as .txt: browsers show it as plain text); return a link."""
        if not relative:
            return '<span class="muted">none</span>'
        if source is not None:
            candidate = (source / relative).resolve()
            # The path comes from the results file: never follow it out of the run's results directory.
            if candidate.is_file() and candidate.is_relative_to(source.resolve()):
                target = f"logs/{slug(run_id)}/{slug(relative)}.txt"
                (self.out / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(candidate, self.out / target)
                return f'<a href="../{target}">{esc(relative)}</a>'
        return f'<span class="muted id" title="not found next to the imported results file">{esc(relative)}</span>'


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f} %"


def _prepare_out_dir(out: Path) -> None:
    """Create ``out`` or refresh a dashboard written there before; refuse any other non-empty directory."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"dashboard output {out} exists and is not a directory: choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ConfigError(
                f"refusing to write the dashboard into {out}: it is not empty and was not written by "
                "`hil dashboard`; pass an empty or new directory"
            )
        for name in ("assets", "metrics", "runs", "logs", "branches"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `hil dashboard`; the directory is rebuilt on every run\n", encoding="utf-8")
    # GitHub Pages: serve files as they are (no Jekyll processing).
    (out / ".nojekyll").write_text("", encoding="utf-8")
    shutil.copytree(ASSETS, out / "assets")


def build_dashboard(
    store: Store, out_dir: str | Path, policy: ThresholdPolicy | None = None, title: str = "esp-smoltcp HIL results"
) -> Path:
    """Write the whole site into ``out_dir`` and return the path of ``index.html``."""
    out = Path(out_dir)
    _prepare_out_dir(out)
    series = {key: points for key, points in build_series(store.metric_rows(), policy).items() if points}
    runs = store.list_runs()
    site = Site(store, out, title, series, runs, {run.run_id: run.commit_url for run in runs})
    site.overview()
    site.branch_pages()
    site.all_runs()
    site.metric_pages()
    site.latency_page()
    site.run_pages()
    return out / "index.html"
