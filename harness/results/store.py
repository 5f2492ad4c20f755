"""Results history: every run's results file imported into SQLite (default) or PostgreSQL.

The store keeps what the regression gate and the dashboard need: runs (identity of board, firmware and lab
config), tests (outcome, duration, console slice), metrics (value, unit, direction), counter deltas and console
events. The original results document is kept too, so ``hil results export`` gives back exactly what was
imported. Import is idempotent: a run is keyed by its ``run_id``.

``db_url`` is a SQLite path (``results/hil.sqlite``), a ``sqlite:///relative.db`` / ``sqlite:////abs.db`` URL,
or a ``postgresql://`` URL (psycopg 3; several self-hosted runners can share one server).
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HilError, MissingToolError

DEFAULT_DB = "results/hil.sqlite"
RESULTS_SCHEMA = 1
OUTCOMES = ("passed", "failed", "skipped", "error")
DIRECTIONS = ("higher", "lower")

# Versioned migrations, applied in order inside one transaction each. The SQL is written once for both SQLite
# and PostgreSQL (no auto-increment keys, no dialect-only types) so the two stores cannot drift apart.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "runs, tests, metrics, counters, events",
        (
            """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            started TEXT NOT NULL,
            started_epoch DOUBLE PRECISION NOT NULL,
            finished TEXT,
            board_kind TEXT NOT NULL,
            board_id TEXT NOT NULL,
            board_mac TEXT,
            fw_app TEXT,
            fw_app_version TEXT,
            fw_elf_sha256 TEXT,
            fw_chip TEXT,
            fw_chip_rev TEXT,
            fw_git_commit TEXT,
            idf_version TEXT,
            esp_smoltcp_version TEXT,
            harness_version TEXT,
            host TEXT,
            config_fingerprint TEXT NOT NULL,
            link_kind TEXT,
            link_rate_mbps DOUBLE PRECISION,
            console_log TEXT,
            source_dir TEXT,
            accepted INTEGER NOT NULL DEFAULT 1,
            imported_at TEXT NOT NULL,
            doc_sha256 TEXT NOT NULL,
            document TEXT NOT NULL
        )""",
            """CREATE TABLE tests (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            idx INTEGER NOT NULL,
            nodeid TEXT NOT NULL,
            outcome TEXT NOT NULL,
            duration_s DOUBLE PRECISION,
            console_slice TEXT,
            message TEXT,
            PRIMARY KEY (run_id, idx)
        )""",
            """CREATE TABLE metrics (
            run_id TEXT NOT NULL,
            test_idx INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            name TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            unit TEXT NOT NULL,
            better TEXT NOT NULL,
            PRIMARY KEY (run_id, test_idx, idx),
            FOREIGN KEY (run_id, test_idx) REFERENCES tests(run_id, idx)
        )""",
            """CREATE TABLE counters (
            run_id TEXT NOT NULL,
            test_idx INTEGER NOT NULL,
            name TEXT NOT NULL,
            delta BIGINT NOT NULL,
            PRIMARY KEY (run_id, test_idx, name),
            FOREIGN KEY (run_id, test_idx) REFERENCES tests(run_id, idx)
        )""",
            """CREATE TABLE events (
            run_id TEXT NOT NULL,
            test_idx INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            kind TEXT NOT NULL,
            lineno INTEGER,
            summary TEXT NOT NULL,
            detail TEXT NOT NULL,
            PRIMARY KEY (run_id, test_idx, idx),
            FOREIGN KEY (run_id, test_idx) REFERENCES tests(run_id, idx)
        )""",
        ),
    ),
    (
        2,
        "indexes for history look-ups by board + config and by metric",
        (
            "CREATE INDEX runs_by_board ON runs (board_kind, board_id, config_fingerprint, started_epoch)",
            "CREATE INDEX metrics_by_name ON metrics (name, run_id)",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]
_CHILD_TABLES = ("events", "counters", "metrics", "tests")


class ResultsError(HilError):
    """A results file or a results store request is invalid."""


@dataclass(frozen=True)
class RunSummary:
    """One line of ``hil results list``."""

    run_id: str
    started: str
    board_kind: str
    board_id: str
    fw_app_version: str | None
    config_fingerprint: str
    accepted: bool
    outcomes: dict[str, int]


@dataclass(frozen=True)
class MetricRow:
    """One metric value joined with what identifies its history."""

    run_id: str
    started_epoch: float
    board_kind: str
    board_id: str
    config_fingerprint: str
    accepted: bool
    nodeid: str
    outcome: str
    name: str
    value: float
    unit: str
    better: str


def _sqlite_path(db_url: str) -> Path:
    if db_url.startswith("sqlite:///"):
        # SQLAlchemy's convention: three slashes then a relative path, four for an absolute one.
        return Path(db_url[len("sqlite:///") :])
    if "://" in db_url:
        raise ConfigError(
            f"unsupported results store URL {db_url!r}: use a SQLite path (e.g. {DEFAULT_DB}), "
            "sqlite:///PATH, or postgresql://USER@HOST/DB"
        )
    return Path(db_url)


def _parse_time(text: str, field: str) -> float:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError) as exc:
        raise ResultsError(f"{field} is not an ISO-8601 time: {text!r}") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def summarize_event(event: dict[str, Any]) -> str:
    """One human line for a console event (panic reason, abort PC, reset reason...)."""
    if isinstance(event.get("summary"), str) and event["summary"]:
        return event["summary"]
    for key in ("reason", "message", "text", "line", "description"):
        value = event.get(key)
        if isinstance(value, str) and value:
            return value
    return str(event.get("kind", "event"))


def validate_document(doc: Any, origin: str = "results file") -> dict[str, Any]:
    """Check a results document against the format in docs/ARCHITECTURE.md.

    Raises:
        ResultsError: naming the first problem found and where.
    """
    if not isinstance(doc, dict):
        raise ResultsError(f"{origin}: expected a JSON object, got {type(doc).__name__}")
    if doc.get("schema") != RESULTS_SCHEMA:
        raise ResultsError(
            f"{origin}: unsupported results schema {doc.get('schema')!r} (this harness reads "
            f"schema {RESULTS_SCHEMA}); re-run with a matching harness version"
        )
    for key in ("run_id", "started"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ResultsError(f"{origin}: missing or empty {key!r}")
    _parse_time(doc["started"], f"{origin}: started")
    if not isinstance(doc.get("board", {}), dict) or not isinstance(doc.get("firmware", {}), dict):
        raise ResultsError(f"{origin}: 'board' and 'firmware' must be objects")
    tests = doc.get("tests")
    if not isinstance(tests, list):
        raise ResultsError(f"{origin}: 'tests' must be a list")
    for i, test in enumerate(tests):
        where = f"{origin}: tests[{i}]"
        if not isinstance(test, dict) or not isinstance(test.get("nodeid"), str):
            raise ResultsError(f"{where}: each test needs a string 'nodeid'")
        if test.get("outcome") not in OUTCOMES:
            raise ResultsError(f"{where}: outcome {test.get('outcome')!r} is not one of {', '.join(OUTCOMES)}")
        for j, metric in enumerate(test.get("metrics") or []):
            mwhere = f"{where}.metrics[{j}]"
            if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric["name"]:
                raise ResultsError(f"{mwhere}: each metric needs a 'name'")
            value = metric.get("value")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ResultsError(f"{mwhere} ({metric['name']}): value {value!r} is not a finite number")
            if metric.get("better") not in DIRECTIONS:
                raise ResultsError(
                    f"{mwhere} ({metric['name']}): 'better' must be 'higher' or 'lower', got {metric.get('better')!r}"
                )
        for name, delta in (test.get("counters") or {}).items():
            if isinstance(delta, bool) or not isinstance(delta, int):
                raise ResultsError(f"{where}.counters[{name!r}]: delta {delta!r} is not an integer")
        for j, event in enumerate(test.get("events") or []):
            if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
                raise ResultsError(f"{where}.events[{j}]: each event needs a string 'kind'")
    return doc


def load_results_file(path: str | Path) -> dict[str, Any]:
    """Read and validate one results file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsError(f"cannot read results file {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); was the run interrupted while writing it?"
        ) from exc
    return validate_document(doc, str(path))


class Store:
    """A results store on SQLite or PostgreSQL. Use :func:`open_store` to get one."""

    def __init__(self, db_url: str | Path = DEFAULT_DB, *, migrate_to: int | None = LATEST_VERSION) -> None:
        self.url = str(db_url)
        if self.url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self._conn = self._connect_postgres(self.url)
        else:
            self.dialect = "sqlite"
            path = _sqlite_path(self.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit (see _transaction), the same on both back ends.
            self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._conn.execute("PRAGMA foreign_keys = ON")
            # WAL + NORMAL: one fsync per checkpoint instead of per import; still crash-safe for a results log.
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
        if migrate_to is not None:
            self.migrate(migrate_to)

    @staticmethod
    def _connect_postgres(url: str) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # psycopg is the optional `postgres` extra
            raise MissingToolError(
                "PostgreSQL stores need psycopg 3 (the postgres extra): pip install 'esp-smoltcp-hil[postgres]'"
            ) from exc
        try:
            return psycopg.connect(url, connect_timeout=15, autocommit=True)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to the results store {url}: {str(exc).strip()}") from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- low level -------------------------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cursor = self._conn.cursor()
        cursor.execute(self._sql(sql), tuple(params))
        return cursor

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._conn.cursor().executemany(self._sql(sql), rows)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self.dialect == "postgresql":
            with self._conn.transaction():
                yield
            return
        # IMMEDIATE takes the write lock up front, so two importers queue instead of failing mid-transaction.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- migrations ------------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The store's schema version (0 for an empty database)."""
        self._execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
            "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        row = self._execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self, target: int = LATEST_VERSION) -> int:
        """Apply the missing migrations up to ``target``; return the resulting version."""
        current = self.schema_version()
        if current > LATEST_VERSION:
            raise ConfigError(
                f"results store {self.url} has schema v{current}, newer than this harness "
                f"understands (v{LATEST_VERSION}): upgrade esp-smoltcp-hil"
            )
        for version, description, statements in MIGRATIONS:
            if version > target:
                break
            with self._transaction():
                if self.dialect == "postgresql":
                    # Runners sharing one server may start together: serialise migrations on a fixed lock key.
                    self._execute("SELECT pg_advisory_xact_lock(7256001)")
                done = self._execute("SELECT 1 FROM schema_version WHERE version = ?", (version,)).fetchone()
                if done:
                    continue
                for statement in statements:
                    self._execute(statement)
                self._execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (version, description, datetime.now(timezone.utc).isoformat()),
                )
        return self.schema_version()

    # -- import ----------------------------------------------------------------------------------------------
    def import_document(self, doc: dict[str, Any], source_dir: str | Path | None = None) -> tuple[str, str]:
        """Import one validated results document.

        Returns:
            ``(run_id, action)`` where action is ``"imported"``, ``"unchanged"`` (same run, same content) or
            ``"updated"`` (same run_id, new content: the run is replaced, its accepted flag kept).
        """
        doc = validate_document(doc)
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        sha = hashlib.sha256(text.encode()).hexdigest()
        run_id = doc["run_id"]
        with self._transaction():
            existing = self._execute("SELECT doc_sha256, accepted FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if existing and existing[0] == sha:
                return run_id, "unchanged"
            accepted = 1
            if existing:
                accepted = int(existing[1])
                for table in _CHILD_TABLES:
                    self._execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                self._execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            self._insert_run(doc, text, sha, accepted, source_dir)
        return run_id, "updated" if existing else "imported"

    def _insert_run(
        self, doc: dict[str, Any], text: str, sha: str, accepted: int, source_dir: str | Path | None
    ) -> None:
        board = doc.get("board") or {}
        firmware = doc.get("firmware") or {}
        components = firmware.get("components") or {}
        link = doc.get("link") or {}
        config = doc.get("config") or {}
        run_id = doc["run_id"]
        self._execute(
            "INSERT INTO runs (run_id, started, started_epoch, finished, board_kind, board_id, board_mac, fw_app, "
            "fw_app_version, fw_elf_sha256, fw_chip, fw_chip_rev, fw_git_commit, idf_version, esp_smoltcp_version, "
            "harness_version, host, config_fingerprint, link_kind, link_rate_mbps, console_log, source_dir, "
            "accepted, imported_at, doc_sha256, document) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                doc["started"],
                _parse_time(doc["started"], "started"),
                doc.get("finished"),
                str(board.get("kind") or "unknown"),
                str(board.get("id") or board.get("mac") or "unknown"),
                board.get("mac"),
                firmware.get("app"),
                firmware.get("app_version"),
                firmware.get("elf_sha256"),
                firmware.get("chip"),
                firmware.get("chip_rev"),
                firmware.get("git_commit") or firmware.get("commit"),
                firmware.get("idf"),
                components.get("esp_smoltcp"),
                doc.get("harness_version"),
                doc.get("host"),
                str(config.get("fingerprint") or ""),
                link.get("kind"),
                _number_or_none(link.get("rate_mbps")),
                doc.get("console_log"),
                str(source_dir) if source_dir else None,
                accepted,
                datetime.now(timezone.utc).isoformat(),
                sha,
                text,
            ),
        )
        tests, metrics, counters, events = [], [], [], []
        for i, test in enumerate(doc["tests"]):
            tests.append(
                (
                    run_id,
                    i,
                    test["nodeid"],
                    test["outcome"],
                    _number_or_none(test.get("duration_s")),
                    test.get("console_slice"),
                    str(test.get("message") or ""),
                )
            )
            for j, metric in enumerate(test.get("metrics") or []):
                metrics.append(
                    (
                        run_id,
                        i,
                        j,
                        metric["name"],
                        float(metric["value"]),
                        str(metric.get("unit") or ""),
                        metric["better"],
                    )
                )
            counters.extend((run_id, i, name, delta) for name, delta in (test.get("counters") or {}).items())
            for j, event in enumerate(test.get("events") or []):
                lineno = event.get("lineno")
                events.append(
                    (
                        run_id,
                        i,
                        j,
                        event["kind"],
                        lineno if isinstance(lineno, int) else None,
                        summarize_event(event),
                        json.dumps(event, sort_keys=True),
                    )
                )
        self._executemany(
            "INSERT INTO tests (run_id, idx, nodeid, outcome, duration_s, console_slice, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            tests,
        )
        self._executemany(
            "INSERT INTO metrics (run_id, test_idx, idx, name, value, unit, better) VALUES (?, ?, ?, ?, ?, ?, ?)",
            metrics,
        )
        self._executemany("INSERT INTO counters (run_id, test_idx, name, delta) VALUES (?, ?, ?, ?)", counters)
        self._executemany(
            "INSERT INTO events (run_id, test_idx, idx, kind, lineno, summary, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            events,
        )

    def import_file(self, path: str | Path) -> tuple[str, str]:
        """Import one results file; see :meth:`import_document`."""
        path = Path(path)
        return self.import_document(load_results_file(path), source_dir=path.resolve().parent)

    # -- queries ---------------------------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        """All run ids, oldest first."""
        return [row[0] for row in self._execute("SELECT run_id FROM runs ORDER BY started_epoch, run_id")]

    def latest_run_id(self) -> str:
        """The most recently started run.

        Raises:
            ResultsError: when the store holds no run.
        """
        row = self._execute("SELECT run_id FROM runs ORDER BY started_epoch DESC, run_id DESC LIMIT 1").fetchone()
        if not row:
            raise ResultsError(
                f"the results store {self.url} holds no runs yet: import some with `hil results import FILE...`"
            )
        return row[0]

    def resolve_run_id(self, run_id: str | None) -> str:
        """Return ``run_id`` if the store has it (default: the latest run)."""
        if run_id is None:
            return self.latest_run_id()
        if not self._execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
            raise ResultsError(f"no run {run_id!r} in {self.url}; `hil results list` shows the stored runs")
        return run_id

    def list_runs(self, limit: int | None = None) -> list[RunSummary]:
        """Runs, newest first, with their test outcome counts."""
        sql = (
            "SELECT run_id, started, board_kind, board_id, fw_app_version, config_fingerprint, accepted "
            "FROM runs ORDER BY started_epoch DESC, run_id DESC"
        )
        rows = self._execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for run_id, outcome, count in self._execute(
            "SELECT run_id, outcome, COUNT(*) FROM tests GROUP BY run_id, outcome"
        ):
            counts.setdefault(run_id, {})[outcome] = int(count)
        return [RunSummary(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), counts.get(r[0], {})) for r in rows]

    def document(self, run_id: str) -> dict[str, Any]:
        """The results document as imported."""
        row = self._execute("SELECT document FROM runs WHERE run_id = ?", (self.resolve_run_id(run_id),)).fetchone()
        return json.loads(row[0])

    def documents(self) -> list[dict[str, Any]]:
        """Every stored results document, oldest first."""
        rows = self._execute("SELECT document FROM runs ORDER BY started_epoch, run_id")
        return [json.loads(row[0]) for row in rows]

    def run_info(self, run_id: str) -> dict[str, Any]:
        """The ``runs`` row of one run as a dict."""
        cursor = self._execute("SELECT * FROM runs WHERE run_id = ?", (self.resolve_run_id(run_id),))
        names = [column[0] for column in cursor.description]
        info = dict(zip(names, cursor.fetchone(), strict=True))
        info.pop("document")
        info["accepted"] = bool(info["accepted"])
        return info

    def set_accepted(self, run_id: str, accepted: bool) -> None:
        """Include (accepted) or exclude (rejected) a run from the baselines of later runs."""
        run_id = self.resolve_run_id(run_id)
        with self._transaction():
            self._execute("UPDATE runs SET accepted = ? WHERE run_id = ?", (int(accepted), run_id))

    def metric_rows(
        self, *, board: tuple[str, str] | None = None, config_fingerprint: str | None = None, run_id: str | None = None
    ) -> list[MetricRow]:
        """Metric values joined with run identity and test outcome, oldest run first."""
        sql = (
            "SELECT r.run_id, r.started_epoch, r.board_kind, r.board_id, r.config_fingerprint, r.accepted, "
            "t.nodeid, t.outcome, m.name, m.value, m.unit, m.better FROM metrics m "
            "JOIN tests t ON t.run_id = m.run_id AND t.idx = m.test_idx "
            "JOIN runs r ON r.run_id = m.run_id"
        )
        where: list[str] = []
        params: list[Any] = []
        if board is not None:
            where += ["r.board_kind = ?", "r.board_id = ?"]
            params += list(board)
        if config_fingerprint is not None:
            where.append("r.config_fingerprint = ?")
            params.append(config_fingerprint)
        if run_id is not None:
            where.append("r.run_id = ?")
            params.append(run_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.started_epoch, r.run_id, m.test_idx, m.idx"
        return [
            MetricRow(r[0], float(r[1]), r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8], float(r[9]), r[10], r[11])
            for r in self._execute(sql, params)
        ]

    def tests(self, run_id: str) -> list[dict[str, Any]]:
        """Tests of one run with their metrics, counters and events."""
        run_id = self.resolve_run_id(run_id)
        tests = [
            {
                "idx": r[0],
                "nodeid": r[1],
                "outcome": r[2],
                "duration_s": r[3],
                "console_slice": r[4],
                "message": r[5],
                "metrics": [],
                "counters": {},
                "events": [],
            }
            for r in self._execute(
                "SELECT idx, nodeid, outcome, duration_s, console_slice, message FROM tests "
                "WHERE run_id = ? ORDER BY idx",
                (run_id,),
            )
        ]
        for test_idx, name, value, unit, better in self._execute(
            "SELECT test_idx, name, value, unit, better FROM metrics WHERE run_id = ? ORDER BY test_idx, idx", (run_id,)
        ):
            tests[test_idx]["metrics"].append({"name": name, "value": value, "unit": unit, "better": better})
        for test_idx, name, delta in self._execute(
            "SELECT test_idx, name, delta FROM counters WHERE run_id = ? ORDER BY test_idx, name", (run_id,)
        ):
            tests[test_idx]["counters"][name] = int(delta)
        for test_idx, kind, lineno, summary, detail in self._execute(
            "SELECT test_idx, kind, lineno, summary, detail FROM events WHERE run_id = ? ORDER BY test_idx, idx",
            (run_id,),
        ):
            tests[test_idx]["events"].append(
                {"kind": kind, "lineno": lineno, "summary": summary, "detail": json.loads(detail)}
            )
        return tests


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def open_store(db_url: str | Path = DEFAULT_DB) -> Store:
    """Open (creating and migrating when needed) the results store at ``db_url``."""
    return Store(db_url)


def import_results_file(path: str | Path, db_url: str | Path = DEFAULT_DB) -> str:
    """Import one results file into the store at ``db_url`` and return its run id (what `hil run` calls)."""
    with open_store(db_url) as store:
        run_id, _ = store.import_file(path)
    return run_id
