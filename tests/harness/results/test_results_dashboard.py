"""The dashboard as a person sees it: rendered in headless Chromium, offline, with hostile console text."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from results_browser import CHROMIUM, Browser
from results_files import write_results

from harness.cli import main
from harness.errors import ConfigError
from harness.results.dashboard import build_dashboard
from harness.results.store import open_store
from harness.results.synthetic import RTT, THROUGHPUT, MetricSpec, synthetic_history

HOSTILE = (
    '</script><script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    '<a href="https://evil.example/">x</a> & "quotes"'
)
P99 = MetricSpec(RTT.nodeid, "ping_rtt_p99_ms", "ms", "lower", 0.17, 20.0)
P90 = MetricSpec(RTT.nodeid, "ping_rtt_p90_ms", "ms", "lower", 0.08, 8.0)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a throughput regression on the newest run and a panic with a hostile reason, as a site."""
    base = tmp_path_factory.mktemp("dashboard")
    docs = synthetic_history([THROUGHPUT, RTT, P90, P99], 24, last_run_change_pct={"iperf3_tcp_mbps": -3.0})
    crashed = docs[-1]["tests"][1]
    crashed["outcome"] = "failed"
    crashed["message"] = HOSTILE
    crashed["events"] = [{"kind": "panic", "lineno": 42, "reason": HOSTILE, "mepc": "0x4ff0a2b4"}]
    crashed["console_slice"] = "run-0023/slices/test_ping.log"
    crashed["nodeid"] = RTT.nodeid
    paths = write_results(base / "results", docs)
    slice_file = base / "results" / "run-0023" / "slices" / "test_ping.log"
    slice_file.parent.mkdir(parents=True)
    slice_file.write_text(f"Guru Meditation Error: Core  0 panic'ed ({HOSTILE})\n", encoding="utf-8")
    docs[-2]["tests"][0]["console_slice"] = "../../../etc/passwd"  # must never be followed out of the results dir
    paths[-2].write_text(json.dumps(docs[-2]), encoding="utf-8")
    branch = synthetic_history([THROUGHPUT, RTT], 3, run_prefix="pr", branch="fix-select", base_branch="main")
    branch[-1]["interrupted"] = True
    branch[-1]["tests"][0]["outcome"] = "interrupted"
    paths += write_results(base / "results", branch)
    db = str(base / "hil.sqlite")
    assert main(["results", "import", "--db", db, *map(str, paths)]) == 0
    out = base / "site"
    assert main(["dashboard", "--db", db, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as chromium:
        yield chromium


def _main_series_page(site: Path, metric: str) -> Path:
    (page,) = [p for p in (site / "metrics").glob(f"{metric}-*.html") if "branch <code>main</code>" in p.read_text()]
    return page


def _pages(site: Path) -> list[Path]:
    runs = sorted((site / "runs").glob("*.html"))
    metrics = sorted((site / "metrics").glob("*.html"))
    branches = sorted((site / "branches").glob("*.html"))
    return [site / "index.html", site / "latency.html", site / "runs.html", *metrics, *branches, runs[0], runs[-1]]


def test_every_page_renders_without_errors_or_network(site: Path, browser: Browser, tmp_path: Path) -> None:
    for page in _pages(site):
        browser.open(page)
        assert browser.problems() == [], page
        urls = browser.requested_urls()
        assert urls and all(url.startswith("file://") for url in urls), (page, urls)
        assert browser.evaluate("document.documentElement.dataset.jsErrors || '0'") == "0"
        expected = browser.evaluate("document.querySelectorAll('svg[data-chart]').length")
        assert browser.evaluate("Number(document.documentElement.dataset.chartsDrawn || -1)") == expected
        drawn_paths = browser.evaluate(
            "Array.from(document.querySelectorAll('svg[data-chart] path'))"
            ".filter(p => /[ML]\\s*[0-9.]+/.test(p.getAttribute('d') || '')).length"
        )
        assert drawn_paths >= expected, page  # every chart drew at least one non-empty path
    browser.open(site / "index.html")
    shot = browser.screenshot(tmp_path / "overview.png")
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overview_and_chart_show_the_regression(site: Path, browser: Browser, tmp_path: Path) -> None:
    browser.open(site / "index.html")
    row = browser.evaluate("Array.from(document.querySelectorAll('tr.regressed')).map(r => r.textContent).join('|')")
    assert "iperf3_tcp_mbps" in row and "regressed" in row
    browser.open(_main_series_page(site, "iperf3_tcp_mbps"))
    assert browser.evaluate("document.querySelectorAll('circle.dot.regressed').length") == 1
    assert browser.evaluate("document.querySelector('path.band').getAttribute('d').length") > 100
    browser.screenshot(tmp_path / "throughput.png")


def test_hostile_console_text_stays_text(site: Path, browser: Browser) -> None:
    (run_page,) = (site / "runs").glob("run-0023-*.html")
    source = run_page.read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in source and "&lt;script&gt;window.__pwned" in source
    browser.open(run_page)
    assert browser.problems() == []
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    assert browser.evaluate("document.querySelectorAll('script').length") == 2  # charts.js + the JSON data block
    assert HOSTILE in browser.evaluate("document.body.innerText")
    link = browser.evaluate(
        "Array.from(document.links).map(a => a.getAttribute('href')).find(h => h.includes('logs/'))"
    )
    assert link and link.endswith(".txt")
    assert HOSTILE in (run_page.parent / link).resolve().read_text(encoding="utf-8")
    remote = browser.evaluate(
        "Array.from(document.links).map(a => a.getAttribute('href')).filter(h => /^(https?:)?\\/\\//.test(h))"
    )
    assert [url.split("/")[5] for url in remote] == ["commit", "actions"]  # the run's commit and CI job, nothing else


def test_no_absolute_or_remote_urls_anywhere(site: Path) -> None:
    """Only links a person follows (a commit, a CI job) leave the site; nothing is ever loaded from elsewhere."""
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for url in re.findall(r'src="([^"]*)"', text):
            assert not re.match(r"^([a-z]+:|/)", url), (page, url)
        for tag, url in re.findall(r'<(\w+)[^>]*?href="([^"]*)"', text):
            if re.match(r"^([a-z]+:|/)", url):
                assert tag == "a" and re.match(
                    r"^https://github\.com/example/esp-smoltcp-hil/(commit|actions)/", url
                ), url
    assert not list(site.rglob("*passwd*"))


def test_failures_and_regressions_come_first(site: Path, browser: Browser) -> None:
    browser.open(site / "index.html")
    headings = browser.evaluate("Array.from(document.querySelectorAll('main h2, main h3')).map(h => h.textContent)")
    assert headings[:3] == ["Overview", "Needs attention", "Failing tests (2)"], headings
    assert headings[3].startswith("Regressed metrics (1)") and headings[4].startswith("Every metric")
    failing = browser.evaluate("document.querySelector('.attention table').innerText")
    assert "interrupted" in failing and "failed" in failing and "fix-select" in failing
    first_row = browser.evaluate("document.querySelector('table.sortable tbody tr').dataset.verdict")
    assert first_row == "regressed"


def test_overview_sorts_and_filters(site: Path, browser: Browser) -> None:
    browser.open(site / "index.html")
    table = "document.querySelector('table.sortable[id]')"
    total = browser.evaluate(f"{table}.tBodies[0].rows.length")
    browser.evaluate(
        "(() => { const box = document.querySelector('.filters'); const input = box.querySelector('.filter-text');"
        " input.value = 'fix-select ping'; input.dispatchEvent(new Event('input')); })()"
    )
    shown = browser.evaluate(f"Array.from({table}.tBodies[0].rows).filter(r => !r.hidden).map(r => r.innerText)")
    assert shown and len(shown) < total and all("fix-select" in row and "ping" in row for row in shown)
    assert browser.evaluate("document.querySelector('.filter-count').textContent") == f"{len(shown)} of {total} shown"
    browser.evaluate(f"{table}.tHead.rows[0].cells[5].click()")  # latest value, ascending
    values = browser.evaluate(f"Array.from({table}.tBodies[0].rows).map(r => Number(r.cells[5].dataset.value))")
    assert values == sorted(values)
    browser.evaluate(f"{table}.tHead.rows[0].cells[5].click()")
    assert browser.evaluate(f"Number({table}.tBodies[0].rows[0].cells[5].dataset.value)") == max(values)


def test_chart_has_commits_on_its_axis_and_zooms(site: Path, browser: Browser) -> None:
    browser.open(_main_series_page(site, "iperf3_tcp_mbps"))
    labels = browser.evaluate("Array.from(document.querySelectorAll('text.commit')).map(t => t.firstChild.nodeValue)")
    assert 5 <= len(labels) <= 12 and all(re.fullmatch(r"[0-9a-f]{8}", label) for label in labels)
    link = browser.evaluate("document.querySelector('a.commit-link').getAttribute('href')")
    assert link.startswith("https://github.com/example/esp-smoltcp-hil/commit/") and link[-40:].startswith(labels[0])
    assert browser.evaluate("document.querySelector('svg.chart').dataset.zoom") == "0-23"
    browser.evaluate(
        "(() => { const svg = document.querySelector('svg.chart'); const box = svg.getBoundingClientRect();"
        " const at = f => ({clientX: box.left + box.width * f, clientY: box.top + box.height / 2, bubbles: true});"
        " svg.dispatchEvent(new PointerEvent('pointerdown', at(0.55)));"
        " svg.dispatchEvent(new PointerEvent('pointermove', at(0.8)));"
        " svg.dispatchEvent(new PointerEvent('pointerup', at(0.99))); })()"
    )
    lo, hi = map(int, browser.evaluate("document.querySelector('svg.chart').dataset.zoom").split("-"))
    assert 10 <= lo < hi == 23
    assert browser.evaluate("document.querySelectorAll('svg.chart circle.dot').length") == hi - lo + 1
    assert browser.evaluate("document.querySelector('.zoom-reset').hidden") is False
    assert browser.evaluate("document.querySelectorAll('svg.chart circle.dot.regressed').length") == 1
    browser.evaluate("document.querySelector('svg.chart').dispatchEvent(new MouseEvent('dblclick', {bubbles: true}))")
    assert browser.evaluate("document.querySelector('svg.chart').dataset.zoom") == "0-23"
    assert browser.problems() == []


def test_branch_pages_show_one_branch(site: Path, browser: Browser) -> None:
    pages = {p.read_text().count("fix-select") > 0: p for p in (site / "branches").glob("*.html")}
    browser.open(pages[True])
    assert browser.problems() == []
    branches = browser.evaluate(
        "Array.from(document.querySelectorAll('table.sortable[id] tbody tr')).map(r => r.cells[1].textContent)"
    )
    assert branches and set(branches) == {"fix-select"}
    assert "interrupted" in browser.evaluate("document.body.innerText")
    runs = browser.evaluate(r"Array.from(document.querySelectorAll('a')).filter(a => /runs\//.test(a.href)).length")
    assert runs >= 3


def test_dashboard_refuses_foreign_directories_and_refreshes_its_own(tmp_path: Path, site: Path) -> None:
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "keep.md").write_text("mine")
    with open_store(tmp_path / "empty.sqlite") as store:
        with pytest.raises(ConfigError, match="not empty"):
            build_dashboard(store, foreign)
        again = tmp_path / "site"
        shutil.copytree(site, again)
        build_dashboard(store, again)
    assert not list((again / "runs").glob("*.html"))
    assert "No metrics stored yet" in (again / "index.html").read_text()
