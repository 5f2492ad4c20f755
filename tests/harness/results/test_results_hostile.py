"""Issue 11 bars for the results commands: hostile text never reaches the terminal, a broken store is one line
and exit 3, bad files never stop an import, read-only commands never create a store, interrupted runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from results_files import write_results

from harness.cli import main
from harness.results.store import open_store
from harness.results.synthetic import RTT, THROUGHPUT, synthetic_history

ESCAPES = (
    "\x1b]52;c;aGFja2Vk\x07",  # OSC 52 clipboard write
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x1b]0;owned\x07",  # window title
    "\x1b[2J\x1b[H\x1bc",  # clear screen, reset
    "\x9b31m\x9d0;t\x9c",  # 8-bit CSI / OSC
)
HOSTILE = "".join(ESCAPES) + " [bold]markup[/] [link=https://evil.example/]x[/link] [/]"
FORBIDDEN = ("\x1b", "\x9b", "\x9d", "\x07", "\x9c")


def _hostile_history(tmp_path: Path) -> tuple[str, list[Path]]:
    docs = synthetic_history([THROUGHPUT, RTT], 8, last_run_change_pct={"iperf3_tcp_mbps": -5.0})
    last = docs[-1]
    last["run_id"] = "run-\x1b]0;title\x07-0007"
    last["board"]["mac"] = HOSTILE
    last["firmware"]["app_version"] = HOSTILE
    last["source"]["branch"] = "main"
    last["source"]["commit_url"] = "javascript:alert(1)" + ESCAPES[0]
    test = last["tests"][1]
    test.update(outcome="failed", message=HOSTILE)
    test["events"] = [{"kind": "panic", "lineno": 1, "reason": HOSTILE}]
    test["metrics"][0]["unit"] = "ms" + ESCAPES[1]
    return str(tmp_path / "hil.sqlite"), write_results(tmp_path / "results", docs)


def test_no_escape_reaches_stdout_of_any_results_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, paths = _hostile_history(tmp_path)
    hostile_run = json.loads(paths[-1].read_text())["run_id"]
    commands = [
        (["results", "import", "--db", db, *map(str, paths)], 0),
        (["results", "list", "--db", db], 0),
        (["report", "--db", db, "--verbose"], 0),
        (["report", "--db", db, "--run", hostile_run], 0),
        (["gate", "--db", db, "--verbose"], 1),
        (["gate", "--db", db, str(paths[-1]), "--markdown", str(tmp_path / "summary.md")], 1),
        (["compare", "--db", db, "run-0000", hostile_run], 0),
        (["results", "export", "--db", db, "--format", "gitlab-metrics"], 0),
        (["results", "export", "--db", db, "--format", "bmf"], 0),
    ]
    for argv, expected in commands:
        assert main(argv) == expected, argv
        out, err = capsys.readouterr()
        for text in (out, err):
            assert not any(ch in text for ch in FORBIDDEN), (argv, text)
    report = (main(["report", "--db", db, "--run", hostile_run]), capsys.readouterr().out)[1]
    assert "[bold]markup[/]" in report and "[link=https://evil.example/]x[/link]" in report  # literal, not markup
    summary = (tmp_path / "summary.md").read_text()
    assert not any(ch in summary for ch in FORBIDDEN) and "javascript:" not in summary.replace("javascript\\:", "")
    assert "](javascript" not in summary


def _corrupt(db: Path) -> None:
    size = db.stat().st_size
    with db.open("r+b") as handle:
        handle.truncate(size // 3)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    with db.open("r+b") as handle:  # a truncated file whose header survived is still "a database" to SQLite
        handle.seek(0)
        handle.write(b"\0" * 100)


def test_a_corrupt_store_is_one_line_with_the_fix_and_exit_3(tmp_path: Path, capsys) -> None:
    paths = write_results(tmp_path / "results", synthetic_history([THROUGHPUT], 6))
    db = tmp_path / "results" / "hil.sqlite"
    assert main(["results", "import", "--db", str(db), *map(str, paths)]) == 0
    _corrupt(db)
    capsys.readouterr()
    for argv in (
        ["results", "import", str(paths[0])],
        ["results", "list"],
        ["results", "export"],
        ["results", "accept", "run-0001"],
        ["results", "reject", "run-0001"],
        ["gate"],
        ["gate", str(paths[-1])],
        ["compare", "run-0000", "run-0001"],
        ["report"],
        ["dashboard", "--out", str(tmp_path / "site")],
    ):
        assert main([*argv, "--db", str(db)]) == 3, argv
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, (argv, err)
        assert f"the store {db} is corrupt" in err
        assert f"move it aside and rebuild it with `hil results import {db.parent}/`" in err


def test_a_missing_store_is_an_error_never_created_by_read_only_commands(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "typo" / "hil.sqlite"
    for argv in (["results", "list"], ["gate"], ["report"], ["compare", "a", "b"], ["results", "export"]):
        assert main([*argv, "--db", str(missing)]) == 3
        assert f"no results store at {missing}" in capsys.readouterr().err
    assert not missing.parent.exists()
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    assert main(["results", "list", "--db", str(empty)]) == 3
    assert "not a results store" in capsys.readouterr().err


def test_import_good_bad_good_imports_both_good_files(tmp_path: Path, capsys) -> None:
    good = write_results(tmp_path / "results", synthetic_history([THROUGHPUT], 2))
    bad = {
        "huge.json": lambda d: d["tests"][0]["metrics"][0].update(value=10**400),
        "counter.json": lambda d: d["tests"][0]["counters"].update(rx_frames=2**70),
        "dict.json": lambda d: d["tests"][0].update(nodeid={"x": 1}),
    }
    bad_paths = []
    for name, mutate in bad.items():
        doc = synthetic_history([THROUGHPUT], 1, run_prefix=name)[0]
        mutate(doc)
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        bad_paths.append(path)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"run_id": "\xff"}')
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 50_000 + "]" * 50_000)
    db = str(tmp_path / "hil.sqlite")
    argv = ["results", "import", "--db", db, str(good[0]), *map(str, bad_paths), str(latin), str(deep), str(good[1])]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out.count("imported: ") == 2
    assert err.count("hil: error: ") == 6 and "5 of 7 file(s) not imported" in err and "Traceback" not in err
    with open_store(db) as store:
        assert store.run_ids() == ["run-0000", "run-0001"]


def test_interrupted_runs_are_stored_shown_and_never_a_baseline(tmp_path: Path, capsys) -> None:
    docs = synthetic_history([THROUGHPUT], 12)
    for doc in docs[5:11]:  # six cancelled runs with a low, partial throughput figure
        doc["interrupted"] = True
        doc["tests"][0]["outcome"] = "interrupted"
        doc["tests"][0]["metrics"][0]["value"] = 40.0
    paths = write_results(tmp_path / "results", docs)
    db = str(tmp_path / "hil.sqlite")
    assert main(["results", "import", "--db", db, *map(str, paths)]) == 0
    capsys.readouterr()
    assert main(["gate", "--db", db]) == 0  # judged against the five clean runs only
    out = capsys.readouterr().out
    assert "1 of 1 metric(s) judged: 0 regressed" in out
    assert main(["report", "--db", db, "--run", "run-0006"]) == 0
    out = capsys.readouterr().out
    assert "interrupted (never a baseline)" in out and "interrupted" in out
    assert main(["gate", "--db", db, "--run", "run-0006"]) == 0  # an interrupted test's figure is not judged
    out = capsys.readouterr().out
    assert "was interrupted" in out and "nothing to judge" in out and "NOT JUDGED" in out
    assert main(["results", "list", "--db", db]) == 0
    assert capsys.readouterr().out.count("interrupted") == 6
