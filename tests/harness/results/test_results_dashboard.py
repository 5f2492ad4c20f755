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
    db = str(base / "hil.sqlite")
    assert main(["results", "import", "--db", db, *map(str, paths)]) == 0
    out = base / "site"
    assert main(["dashboard", "--db", db, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as chromium:
        yield chromium


def _pages(site: Path) -> list[Path]:
    runs = sorted((site / "runs").glob("*.html"))
    metrics = sorted((site / "metrics").glob("*.html"))
    return [site / "index.html", site / "latency.html", site / "runs.html", *metrics, runs[0], runs[-1]]


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
    (page,) = (site / "metrics").glob("iperf3_tcp_mbps-*.html")
    browser.open(page)
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
    assert (
        browser.evaluate(
            "Array.from(document.links).filter(a => /^(https?:)?\\/\\//.test(a.getAttribute('href'))).length"
        )
        == 0
    )


def test_no_absolute_or_remote_urls_anywhere(site: Path) -> None:
    for page in site.rglob("*.html"):
        for url in re.findall(r'(?:src|href)="([^"]*)"', page.read_text(encoding="utf-8")):
            assert not re.match(r"^([a-z]+:|/)", url), (page, url)
    assert not list(site.rglob("*passwd*"))


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
