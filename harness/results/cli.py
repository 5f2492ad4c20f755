"""`hil results import|list|export|accept|reject`, `hil gate`, `hil compare`, `hil report`, `hil dashboard`."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.config import LabConfig
from harness.console.sanitize import sanitize, sanitize_line
from harness.errors import ConfigError
from harness.results.document import ResultsError, load_results_file
from harness.results.exports import (
    GateReport,
    bencher_bmf,
    github_benchmark,
    gitlab_metrics,
    markdown_summary,
    verdict_line,
)
from harness.results.regress import (
    ThresholdPolicy,
    Verdict,
    bisect_runs,
    compare_runs,
    evaluate_run,
    history_rows,
    judge_rows,
)
from harness.results.store import DEFAULT_DB, StoreError, document_metric_rows, open_store, run_row
from harness.results.terminal import (
    compare_summary,
    compare_table,
    line,
    make_console,
    run_tables,
    runs_table,
    verdict_table,
)


def load_policy(config_path: Path | None) -> ThresholdPolicy:
    """Thresholds from the ``[regress]`` table of the lab config (defaults when there is no config file).

    ``[regress]`` holds the defaults (``window``, ``min_history``, ``noise_sigmas``, ...) and
    ``[regress.thresholds.<metric>]`` the per-metric overrides; the file is loaded as `hil run` loads it.
    """
    regress = LabConfig.load(config_path).regress
    per_metric = {metric: table.given() for metric, table in regress.thresholds.items()}
    return ThresholdPolicy.from_config(per_metric, regress.given())


EXIT_OK, EXIT_REGRESSED, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Exit 3 with the store's one-line explanation when the results store cannot be used.

    Usage and config errors (``ConfigError``, ``ResultsError``) go on to `hil`'s handler: one line, exit 2.
    """

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except StoreError as exc:
            _error(str(exc))
            return EXIT_STORE

    return run


def _error(message: str) -> None:
    print(f"hil: error: {sanitize_line(message)}", file=sys.stderr)


def _common(parser: argparse.ArgumentParser, config: bool = False) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="URL",
        help=f"results store: SQLite path or postgresql:// URL (default {DEFAULT_DB})",
    )
    if config:
        parser.add_argument(
            "--hil-config",
            type=Path,
            metavar="FILE",
            help="lab config with [regress] thresholds (default ./hil.toml if present)",
        )


EXIT_CODES = (
    "exit status: 0 success, 1 a metric regressed (gate only), 2 usage or config error, a bad results file "
    "or an unknown run, 3 the results store cannot be used (missing, corrupt, locked, unreachable)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the results commands to `hil`."""
    results = subparsers.add_parser(
        "results", help="results history: import, list, export, accept/reject runs", epilog=EXIT_CODES
    )
    actions = results.add_subparsers(dest="results_command", metavar="ACTION", required=True)

    def command(parent: Any, name: str, func: Callable[[argparse.Namespace], int], text: str) -> Any:
        sub = parent.add_parser(name, help=text, description=text, epilog=EXIT_CODES)
        sub.set_defaults(func=_guarded(func))
        return sub

    imp = command(actions, "import", cmd_import, "import results files (idempotent: a run is keyed by its run_id)")
    imp.add_argument("files", nargs="+", metavar="FILE", help="results files, or directories holding them")
    _common(imp)

    lst = command(actions, "list", cmd_list, "list stored runs, newest first")
    lst.add_argument("--limit", type=int, default=50, help="show at most N runs (0: all; default 50)")
    _common(lst)

    exp = command(actions, "export", cmd_export, "write stored results as JSON, or in a CI tool's format")
    exp.add_argument(
        "--format",
        choices=("json", "github-benchmark", "bmf", "gitlab-metrics"),
        default="json",
        help="json: the imported documents (default); github-benchmark: github-action-benchmark's custom "
        "format (with --better); bmf: Bencher Metric Format; gitlab-metrics: a GitLab metrics report",
    )
    exp.add_argument("--json", action="store_true", help="same as --format json")
    exp.add_argument(
        "--better",
        choices=("higher", "lower"),
        help="github-benchmark: only the metrics where higher (customBiggerIsBetter) or lower is better",
    )
    exp.add_argument("--run", metavar="ID", help="only this run (CI formats: default the latest)")
    exp.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    _common(exp)

    for name, accepted, text in (
        ("accept", True, "use a run in later baselines (the default for new runs)"),
        ("reject", False, "leave a run out of later baselines (e.g. a broken lab)"),
    ):
        sub = command(actions, name, cmd_set_accepted, text)
        sub.add_argument("run_id", metavar="RUN_ID")
        _common(sub)
        sub.set_defaults(accepted=accepted)

    gate = command(
        subparsers,
        "gate",
        cmd_gate,
        "judge one run's metrics against the history of its branch (or --base); exit 1 if any regressed",
    )
    gate.add_argument("results_file", nargs="?", metavar="RESULTS_FILE", help="the run to judge, as a results file")
    gate.add_argument("--run", metavar="ID", help="the run to judge, from the store (default: the newest run)")
    gate.add_argument(
        "--base", metavar="BRANCH", help="judge against this branch's history (pull requests: the target branch)"
    )
    gate.add_argument("--verbose", action="store_true", help="also list every metric that did not regress")
    gate.add_argument(
        "--markdown",
        metavar="FILE",
        help="write the verdict as markdown (default: appended to $GITHUB_STEP_SUMMARY when that is set)",
    )
    _common(gate, config=True)

    compare = command(
        subparsers, "compare", cmd_compare, "two runs' metrics side by side, judged with the gate's noise model"
    )
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    _common(compare, config=True)

    report = command(subparsers, "report", cmd_report, "a run's tests, changed metrics and console events")
    report.add_argument("--run", metavar="ID", help="run to show (default: the latest)")
    report.add_argument("--verbose", action="store_true", help="every test and metric, not only what needs a look")
    _common(report, config=True)

    bis = command(
        subparsers,
        "bisect",
        cmd_bisect,
        "name the first run between two runs where a metric stepped (asv's step detection)",
    )
    bis.add_argument("good", metavar="GOOD_RUN", help="a run before the change")
    bis.add_argument("bad", metavar="BAD_RUN", help="a run after it (its branch, board and config are searched)")
    bis.add_argument("--metric", metavar="NAME", help="only this metric")
    bis.add_argument("--test", metavar="TEXT", help="only tests whose node id contains TEXT")
    _common(bis, config=True)

    dash = command(subparsers, "dashboard", cmd_dashboard, "write the static results dashboard (works offline)")
    dash.add_argument("--out", required=True, metavar="DIR", help="output directory (created or refreshed)")
    dash.add_argument("--title", default="esp-smoltcp HIL results", help="site title")
    _common(dash, config=True)


def results_files(names: list[str]) -> list[str]:
    """The files to import: a directory stands for the results files (`<run-id>.json`) directly in it.

    In a directory, JSON documents that are not results (e.g. a selftest matrix) and hidden files (a temp
    file of a run being written) are skipped; a file that is not valid JSON is kept, so its error is reported.
    """
    files: list[str] = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            files.append(name)
            continue
        for candidate in sorted(path.glob("*.json")):
            if candidate.name.startswith("."):
                continue
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except OSError:
                continue
            except (ValueError, RecursionError):
                files.append(str(candidate))
                continue
            if isinstance(data, dict) and "run_id" in data and "tests" in data:
                files.append(str(candidate))
    return files


def cmd_import(args: argparse.Namespace) -> int:
    """Import each file (directories: the results files in them); report every bad one.

    Exit 0 when every file was imported, 2 when any file was bad (the good ones are imported), 3 when the store
    cannot be used (import stops there).
    """
    failed = 0
    files = results_files(args.files)
    if not files:
        _error(f"no results files in {' '.join(args.files)}")
        return EXIT_USAGE
    with open_store(args.db) as store:
        for name in files:
            try:
                run_id, action = store.import_file(name)
            except ResultsError as exc:
                failed += 1
                _error(str(exc))
                continue
            print(sanitize_line(f"{action}: {run_id} ({name})"))
    if failed:
        _error(f"{failed} of {len(files)} file(s) not imported (see above); the others were")
    return EXIT_USAGE if failed else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """Print the stored runs."""
    with open_store(args.db, create=False) as store:
        make_console().print(runs_table(store.list_runs(args.limit or None)))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Write the results documents as a JSON array, or one run in a CI tool's format."""
    fmt = "json" if args.json else args.format
    with open_store(args.db, create=False) as store:
        if fmt == "json":
            documents = [store.document(args.run)] if args.run else store.documents()
            text = json.dumps(documents, indent=2, sort_keys=True) + "\n"
        else:
            tests = store.tests(store.resolve_run_id(args.run))
            if fmt == "github-benchmark":
                if not args.better:
                    raise ConfigError("--format github-benchmark needs --better higher or --better lower")
                text = github_benchmark(tests, args.better)
            elif fmt == "bmf":
                text = bencher_bmf(tests)
            else:
                text = gitlab_metrics(tests)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_set_accepted(args: argparse.Namespace) -> int:
    """Mark a run accepted or rejected for baselines."""
    with open_store(args.db, create=False) as store:
        store.set_accepted(args.run_id, args.accepted)
    print(sanitize_line(f"{args.run_id}: {'accepted' if args.accepted else 'rejected'}"))
    return EXIT_OK


def _gate_report(args: argparse.Namespace, policy: ThresholdPolicy) -> GateReport:
    """Judge the run named by a results file, ``--run``, or (neither) the newest stored run."""
    if args.results_file and args.run:
        raise ConfigError("give the run to judge either as a results file or as --run, not both")
    with open_store(args.db, create=False) as store:
        if args.results_file:
            doc = load_results_file(args.results_file)
            run = {key: sanitize(v) if isinstance(v, str) else v for key, v in run_row(doc).items()}
            candidate = document_metric_rows(doc)
        else:
            run = store.run_info(store.resolve_run_id(args.run))
            candidate = store.metric_rows(run_id=run["run_id"])
        base = run["branch"] if args.base is None else args.base
        verdicts = judge_rows(candidate, history_rows(store, run, base), policy)
    return GateReport(run, base, verdicts, policy.default.min_history)


def cmd_gate(args: argparse.Namespace) -> int:
    """Print what regressed (``--verbose``: every metric); exit 1 if any metric regressed."""
    policy = load_policy(args.hil_config)
    report = _gate_report(args, policy)
    run = report.run
    console = make_console()
    chosen = "" if args.results_file or args.run else " (the newest run; pass a results file or --run)"
    commit = (run.get("commit_sha") or "unknown")[:12]
    console.print(
        line(
            f"gate: run {run['run_id']}{chosen}, commit {commit}, branch {run.get('branch') or '(none)'}, "
            f"against branch {report.base_branch or '(none)'} on {run['board_kind']} {run['board_id']}"
        )
    )
    if run.get("interrupted"):
        console.print(line("gate: this run was interrupted: its figures are partial (it is never a baseline)"))
    console.print(
        line(
            f"gate: {report.judged} of {len(report.verdicts)} metric(s) judged: "
            f"{report.count(Verdict.REGRESSED)} regressed, {report.count(Verdict.IMPROVED)} improved, "
            f"{report.count(Verdict.UNCHANGED)} unchanged"
        )
    )
    note = report.history_note()
    if note:
        console.print(line(f"gate: {note}", "yellow"))
    if args.verbose:
        console.print(verdict_table(report.verdicts, f"gate: run {run['run_id']}"))
    else:
        for verdict in report.regressed:
            console.print(line(verdict_line(verdict), "bold red"))
    _write_markdown(args.markdown, markdown_summary(report))
    if report.status == "fail":
        console.print(line(f"gate: FAIL ({len(report.regressed)} metric(s) regressed)", "bold red"))
        return EXIT_REGRESSED
    if report.status == "not judged":
        console.print(line("gate: NOT JUDGED (no metric has enough history; this is not a pass)", "yellow"))
        return EXIT_OK
    console.print(line("gate: pass"))
    return EXIT_OK


def _write_markdown(path: str | None, text: str) -> None:
    """Write the markdown summary to ``path``, or append it to $GITHUB_STEP_SUMMARY when that is set."""
    if path:
        Path(path).write_text(text, encoding="utf-8")
        return
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(text)


def cmd_compare(args: argparse.Namespace) -> int:
    """Print two runs side by side, judged with the gate's noise model."""
    policy = load_policy(args.hil_config)
    with open_store(args.db, create=False) as store:
        comparisons = compare_runs(store, args.run_a, args.run_b, policy)
        # Which stack each run measured (a smoltcp run beside a linux run is the point of comparing them).
        labels = [
            f"{run}, {stack}" if (stack := store.document(run).get("stack")) else run
            for run in (args.run_a, args.run_b)
        ]
    console = make_console()
    console.print(compare_table(labels[0], labels[1], comparisons))
    console.print(line(compare_summary(comparisons)))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Print one run's facts: by default what needs a look (tests that did not pass, changed metrics)."""
    policy = load_policy(args.hil_config)
    with open_store(args.db, create=False) as store:
        run_id = store.resolve_run_id(args.run)
        tables = run_tables(
            store.run_info(run_id), store.tests(run_id), evaluate_run(store, run_id, policy), verbose=args.verbose
        )
    console = make_console()
    for table in tables:
        console.print(table)
    return EXIT_OK


def cmd_bisect(args: argparse.Namespace) -> int:
    """Print, per metric, the first run where its level stepped between the two runs."""
    policy = load_policy(args.hil_config)
    with open_store(args.db, create=False) as store:
        steps, series, runs = bisect_runs(store, args.good, args.bad, policy, args.metric, args.test)
        commit_urls = {step.run_id: store.run_info(step.run_id)["commit_url"] for step in steps}
    console = make_console()
    console.print(line(f"bisect: {series} metric series over {runs} runs searched, {len(steps)} stepped"))
    for step in steps:
        commit = (step.commit or "unknown commit")[:12]
        url = f" {commit_urls[step.run_id]}" if commit_urls[step.run_id] else ""
        change = f"{step.change_pct:+.2f} %, " if step.change_pct is not None else ""
        console.print(
            line(
                f"{step.metric} ({step.nodeid}): first stepped at run {step.run_id}, commit {commit}{url}: "
                f"{step.before:.4g} -> {step.after:.4g} {step.unit} ({change}{step.direction}; "
                f"{step.runs_before} runs before, {step.runs_after} from it on)",
                "bold red" if step.direction == "worse" else "green",
            )
        )
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Build the static site."""
    from harness.results.dashboard import build_dashboard

    policy = load_policy(args.hil_config)
    with open_store(args.db, create=False) as store:
        index = build_dashboard(store, args.out, policy, title=args.title)
    print(sanitize_line(f"dashboard written: {index}"))
    return EXIT_OK
