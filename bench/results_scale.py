"""Scale benchmark: import 1,000 runs x 30 metrics into a fresh store and build the dashboard; print seconds.

Usage: ``python bench/results_scale.py [--runs 1000] [--db URL]`` (default: a SQLite file in a temp dir).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.results.dashboard import build_dashboard
from harness.results.regress import evaluate_run
from harness.results.store import open_store
from harness.results.synthetic import MetricSpec, synthetic_history


def specs() -> list[MetricSpec]:
    """30 metrics: 10 tests x (throughput, RTT p50, RTT p99)."""
    out = []
    for t in range(10):
        nodeid = f"tests/scenarios/test_scale.py::test_case[{t}]"
        out += [
            MetricSpec(nodeid, "tcp_mbps", "Mbit/s", "higher", 90.0 + t, 0.3),
            MetricSpec(nodeid, "rtt_p50_ms", "ms", "lower", 0.5, 3.0),
            MetricSpec(nodeid, "rtt_p99_ms", "ms", "lower", 1.5, 10.0),
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--db", help="store URL (default: fresh SQLite file in a temp dir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hil-rs-scale-"))
    try:
        docs = synthetic_history(specs(), args.runs, seed=7, last_run_change_pct={"tcp_mbps": -4.0})
        files = []
        for doc in docs:
            path = work / "results" / f"{doc['run_id']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(doc), encoding="utf-8")
            files.append(path)
        db = args.db or str(work / "hil.sqlite")
        metrics = sum(len(t["metrics"]) for t in docs[0]["tests"])
        with open_store(db) as store:
            started = time.perf_counter()
            for path in files:
                store.import_file(path)
            imported = time.perf_counter() - started
            started = time.perf_counter()
            verdicts = evaluate_run(store)
            gated = time.perf_counter() - started
            started = time.perf_counter()
            build_dashboard(store, work / "site")
            built = time.perf_counter() - started
        pages = sum(1 for _ in (work / "site").rglob("*.html"))
        regressed = sum(v.judgement.verdict.value == "regressed" for v in verdicts)
        print(f"store: {'PostgreSQL' if db.startswith('postgres') else 'SQLite'}; {args.runs} runs x {metrics} metrics")
        print(f"import: {imported:.2f} s ({1000 * imported / args.runs:.2f} ms/run)")
        print(f"gate on the newest run: {gated:.2f} s ({regressed} of {len(verdicts)} metrics regressed)")
        print(f"dashboard: {built:.2f} s ({pages} pages)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
