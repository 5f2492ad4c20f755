"""Store: import (idempotent), migrations, validation, export, accept/reject, on SQLite and real PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from results_files import write_results

from harness.errors import ConfigError
from harness.results.store import (
    LATEST_VERSION,
    ResultsError,
    Store,
    StoreError,
    import_results_file,
    open_store,
)
from harness.results.synthetic import RTT, THROUGHPUT, synthetic_history


def test_import_is_idempotent_and_keeps_everything(db_url: str, tmp_path: Path) -> None:
    docs = synthetic_history([THROUGHPUT, RTT], 3)
    docs[1]["tests"][0]["events"] = [{"kind": "panic", "lineno": 12, "reason": "Load access fault"}]
    paths = write_results(tmp_path / "results", docs)
    with open_store(db_url) as store:
        assert [store.import_file(p)[1] for p in paths] == ["imported"] * 3
        assert [store.import_file(p)[1] for p in paths] == ["unchanged"] * 3
        assert store.run_ids() == [d["run_id"] for d in docs]
        assert store.documents() == docs
        tests = store.tests(docs[1]["run_id"])
        assert tests[0]["events"][0]["summary"] == "Load access fault"
        assert tests[0]["counters"] == docs[1]["tests"][0]["counters"]
        assert {m["name"] for t in tests for m in t["metrics"]} == {"iperf3_tcp_mbps", "ping_rtt_p50_ms"}
        info = store.run_info(docs[0]["run_id"])
        assert info["board_kind"] == "virtual" and info["esp_smoltcp_version"] == "0.2.0"
        assert info["source_dir"] == str((tmp_path / "results").resolve())


def test_reimport_with_new_content_replaces_the_run(db_url: str) -> None:
    doc = synthetic_history([THROUGHPUT], 1)[0]
    with open_store(db_url) as store:
        store.import_document(doc)
        store.set_accepted(doc["run_id"], False)
        doc["tests"][0]["metrics"][0]["value"] = 12.5
        assert store.import_document(doc) == (doc["run_id"], "updated")
        assert len(store.run_ids()) == 1
        assert store.tests(doc["run_id"])[0]["metrics"][0]["value"] == 12.5
        assert store.run_info(doc["run_id"])["accepted"] is False  # a manual rejection survives re-import


def test_import_results_file_api_creates_the_default_layout(tmp_path: Path) -> None:
    (path,) = write_results(tmp_path, synthetic_history([THROUGHPUT], 1))
    db = tmp_path / "nested" / "dir" / "hil.sqlite"
    assert import_results_file(path, db) == "run-0000"
    assert import_results_file(path, f"sqlite:///{db}") == "run-0000"
    with open_store(db) as store:
        assert store.run_ids() == ["run-0000"]


def test_migrations_are_versioned_and_upgrade_existing_data(db_url: str) -> None:
    doc = synthetic_history([THROUGHPUT], 1)[0]
    old = Store(db_url, migrate_to=2)
    assert old.schema_version() == 2
    with old._transaction():  # a run as a v2 harness stored it
        old._execute(
            "INSERT INTO runs (run_id, started, started_epoch, board_kind, board_id, config_fingerprint, "
            "imported_at, doc_sha256, document) VALUES (?, ?, 0, 'virtual', 'b', '', 'now', 'x', ?)",
            (doc["run_id"], doc["started"], json.dumps(doc)),
        )
    old.close()
    with open_store(db_url) as store:
        assert store.schema_version() == LATEST_VERSION == 3
        assert store.run_ids() == [doc["run_id"]]
        info = store.run_info(doc["run_id"])
        assert info["branch"] == "" and info["interrupted"] is False and info["commit_sha"] is None
        assert store.migrate() == LATEST_VERSION  # applying again is a no-op


def test_store_newer_than_harness_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "hil.sqlite"
    open_store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'future', 'now')")
    with pytest.raises(StoreError, match="newer than this harness"):
        open_store(db)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema=7), "unsupported results schema 7"),
        (lambda d: d.pop("run_id"), "missing or empty 'run_id'"),
        (lambda d: d.update(started="yesterday"), "not an ISO-8601 time"),
        (lambda d: d["tests"][0].update(outcome="exploded"), "outcome 'exploded'"),
        (lambda d: d["tests"][0]["metrics"][0].update(better="up"), "'better' must be 'higher' or 'lower'"),
        (lambda d: d["tests"][0]["metrics"][0].update(value="fast"), "is not a finite number"),
        (lambda d: d["tests"][0]["counters"].update(rx_frames=1.5), "is not a 64-bit integer"),
        (lambda d: d["tests"][0]["counters"].update(rx_frames=2**70), "is not a 64-bit integer"),
        (lambda d: d["tests"][0]["metrics"][0].update(value=10**400), "is not a finite number"),
        (lambda d: d["tests"][0].update(message={"a": 1}), "message: expected a string or null, got an object"),
        (lambda d: d["tests"][0].update(console_slice=[1]), "console_slice: expected a string or null, got a list"),
        (lambda d: d.update(started={"t": 1}), "missing or empty .started."),
        (lambda d: d["board"].update(kind={"x": 1}), "board.kind: expected a string or null"),
        (lambda d: d.update(link=[]), "'link' must be an object"),
        (lambda d: d["link"].update(rate_mbps="fast"), "link.rate_mbps: expected a finite number"),
        (lambda d: d["tests"][0].update(events=[{"kind": "panic", "lineno": 2**64}]), "lineno .* is not an integer"),
        (lambda d: d.update(interrupted="yes"), "'interrupted' must be true or false"),
    ],
)
def test_invalid_results_files_are_rejected_with_the_reason(tmp_path: Path, mutate, message: str) -> None:
    doc = synthetic_history([THROUGHPUT], 1)[0]
    mutate(doc)
    (path,) = write_results(tmp_path, [doc]) if "run_id" in doc else [tmp_path / "x.json"]
    path.write_text(json.dumps(doc), encoding="utf-8")
    with open_store(tmp_path / "hil.sqlite") as store, pytest.raises(ResultsError, match=message):
        store.import_file(path)
    with open_store(tmp_path / "hil.sqlite") as store:
        assert store.run_ids() == []


def test_undecodable_and_deeply_nested_files_are_explained(tmp_path: Path) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"schema": 1, "run_id": "caf\xe9"}')
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with open_store(tmp_path / "hil.sqlite") as store:
        with pytest.raises(ResultsError, match=r"not UTF-8 text \(byte 0xe9 at offset 28\)"):
            store.import_file(latin)
        with pytest.raises(ResultsError, match="nested too deeply"):
            store.import_file(deep)


def test_text_columns_are_sanitised_and_the_document_kept(db_url: str) -> None:
    doc = synthetic_history([THROUGHPUT], 1)[0]
    doc["tests"][0]["message"] = "boom \x1b]52;c;aGk=\x07\x00 \ud800end"
    doc["tests"][0]["events"] = [{"kind": "panic", "lineno": 3, "reason": "\x1b[2Jreason\x9b1m"}]
    with open_store(db_url) as store:
        store.import_document(doc)
        (test,) = store.tests(doc["run_id"])
        assert test["message"] == "boom  end" and test["events"][0]["summary"] == "reason"
        assert store.document(doc["run_id"]) == doc


def test_truncated_file_and_bad_urls_are_explained(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"schema": 1, "run_id": "a', encoding="utf-8")
    with open_store(tmp_path / "hil.sqlite") as store, pytest.raises(ResultsError, match="interrupted"):
        store.import_file(path)
    with pytest.raises(ConfigError, match="unsupported results store URL"):
        open_store("mysql://db/results")
    with pytest.raises(ResultsError, match="no run 'nope'"), open_store(tmp_path / "hil.sqlite") as store:
        store.run_info("nope")
    with pytest.raises(ResultsError, match="holds no runs yet"), open_store(tmp_path / "hil.sqlite") as store:
        store.latest_run_id()


def test_postgres_connection_failure_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot connect to the results store"):
        open_store(f"postgresql://hil@/x?host={tmp_path}&connect_timeout=2")
