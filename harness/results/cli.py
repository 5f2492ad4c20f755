"""`hil results import|list|export|accept|reject`, `hil gate`, `hil compare`, `hil report`, `hil dashboard`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.config import LabConfig
from harness.errors import HilError
from harness.results.regress import ThresholdPolicy, Verdict, any_regressed, evaluate_run
from harness.results.store import DEFAULT_DB, open_store
from harness.results.terminal import compare_table, make_console, run_tables, runs_table, verdict_table


def load_policy(config_path: Path | None) -> ThresholdPolicy:
    """Thresholds from the ``[regress]`` table of the lab config (defaults when there is no config file).

    ``[regress]`` holds the defaults (``window``, ``min_history``, ``noise_sigmas``, ...) and
    ``[regress.thresholds.<metric>]`` the per-metric overrides; the file is loaded as `hil run` loads it.
    """
    regress = LabConfig.load(config_path).regress
    per_metric = {metric: table.given() for metric, table in regress.thresholds.items()}
    return ThresholdPolicy.from_config(per_metric, regress.given())


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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the results commands to `hil`."""
    results = subparsers.add_parser("results", help="results history: import, list, export, accept/reject runs")
    actions = results.add_subparsers(dest="results_command", metavar="ACTION", required=True)

    imp = actions.add_parser("import", help="import results files (idempotent: a run is keyed by its run_id)")
    imp.add_argument("files", nargs="+", metavar="FILE", help="results files, or directories holding them")
    _common(imp)
    imp.set_defaults(func=cmd_import)

    lst = actions.add_parser("list", help="list stored runs, newest first")
    lst.add_argument("--limit", type=int, default=50, help="show at most N runs (0: all; default 50)")
    _common(lst)
    lst.set_defaults(func=cmd_list)

    exp = actions.add_parser("export", help="write stored results documents as JSON")
    exp.add_argument("--json", action="store_true", default=True, help="JSON array of results documents (default)")
    exp.add_argument("--run", metavar="ID", help="only this run")
    exp.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    _common(exp)
    exp.set_defaults(func=cmd_export)

    for name, accepted, text in (
        ("accept", True, "use a run in later baselines (the default for new runs)"),
        ("reject", False, "leave a run out of later baselines (e.g. a broken lab)"),
    ):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("run_id", metavar="RUN_ID")
        _common(sub)
        sub.set_defaults(func=cmd_set_accepted, accepted=accepted)

    gate = subparsers.add_parser("gate", help="judge a run's metrics against history; exit 1 if any regressed")
    gate.add_argument("--run", metavar="ID", help="run to judge (default: the latest)")
    _common(gate, config=True)
    gate.set_defaults(func=cmd_gate)

    compare = subparsers.add_parser("compare", help="two runs' metrics side by side with deltas")
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    _common(compare)
    compare.set_defaults(func=cmd_compare)

    report = subparsers.add_parser("report", help="a run's tests, metrics, verdicts and events in the terminal")
    report.add_argument("--run", metavar="ID", help="run to show (default: the latest)")
    _common(report, config=True)
    report.set_defaults(func=cmd_report)

    dash = subparsers.add_parser("dashboard", help="write the static results dashboard (works offline)")
    dash.add_argument("--out", required=True, metavar="DIR", help="output directory (created or refreshed)")
    dash.add_argument("--title", default="esp-smoltcp HIL results", help="site title")
    _common(dash, config=True)
    dash.set_defaults(func=cmd_dashboard)


def results_files(names: list[str]) -> list[str]:
    """The files to import: a directory stands for the results files (`<run-id>.json`) directly in it."""
    files: list[str] = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            files.append(name)
            continue
        for candidate in sorted(path.glob("*.json")):
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and "run_id" in data and "tests" in data:
                files.append(str(candidate))
    return files


def cmd_import(args: argparse.Namespace) -> int:
    """Import each file (directories: the results files in them); report every bad one, exit 2 if any failed."""
    failed = 0
    files = results_files(args.files)
    if not files:
        print(f"hil: error: no results files in {' '.join(args.files)}", file=sys.stderr)
        return 2
    with open_store(args.db) as store:
        for name in files:
            try:
                run_id, action = store.import_file(name)
            except HilError as exc:
                failed += 1
                print(f"hil: error: {exc}", file=sys.stderr)
                continue
            print(f"{action}: {run_id} ({name})")
    return 2 if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print the stored runs."""
    with open_store(args.db) as store:
        make_console().print(runs_table(store.list_runs(args.limit or None)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the results documents as a JSON array."""
    with open_store(args.db) as store:
        documents = [store.document(args.run)] if args.run else store.documents()
    text = json.dumps(documents, indent=2, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def cmd_set_accepted(args: argparse.Namespace) -> int:
    """Mark a run accepted or rejected for baselines."""
    with open_store(args.db) as store:
        store.set_accepted(args.run_id, args.accepted)
    print(f"{args.run_id}: {'accepted' if args.accepted else 'rejected'}")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    """Print the verdicts of a run; 1 if any metric regressed."""
    policy = load_policy(args.hil_config)
    with open_store(args.db) as store:
        run_id = store.resolve_run_id(args.run)
        verdicts = evaluate_run(store, run_id, policy)
    console = make_console()
    console.print(verdict_table(verdicts, f"gate: run {run_id}"))
    counts = {verdict: sum(v.judgement.verdict is verdict for v in verdicts) for verdict in Verdict}
    console.print(", ".join(f"{n} {verdict.value}" for verdict, n in counts.items()))
    if any_regressed(verdicts):
        console.print("gate: FAIL (at least one metric regressed)", style="bold red")
        return 1
    console.print("gate: pass")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Print two runs side by side."""
    with open_store(args.db) as store:
        table = compare_table(args.run_a, args.run_b, store.tests(args.run_a), store.tests(args.run_b))
    make_console().print(table)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print one run's facts."""
    policy = load_policy(args.hil_config)
    with open_store(args.db) as store:
        run_id = store.resolve_run_id(args.run)
        tables = run_tables(store.run_info(run_id), store.tests(run_id), evaluate_run(store, run_id, policy))
    console = make_console()
    for table in tables:
        console.print(table)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Build the static site."""
    from harness.results.dashboard import build_dashboard

    policy = load_policy(args.hil_config)
    with open_store(args.db) as store:
        index = build_dashboard(store, args.out, policy, title=args.title)
    print(f"dashboard written: {index}")
    return 0
