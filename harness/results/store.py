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
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.console.sanitize import sanitize
from harness.errors import ConfigError, HilError, MissingToolError
from harness.results.document import ResultsError, is_finite_number, load_results_file, parse_time, validate_document

DEFAULT_DB = "results/hil.sqlite"

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
    (
        3,
        "interrupted runs; the code a run tested (commit, branch, pull request, CI job)",
        (
            "ALTER TABLE runs ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE runs ADD COLUMN commit_sha TEXT",
            "ALTER TABLE runs ADD COLUMN branch TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE runs ADD COLUMN base_branch TEXT",
            "ALTER TABLE runs ADD COLUMN pr TEXT",
            "ALTER TABLE runs ADD COLUMN ci_job_url TEXT",
            "ALTER TABLE runs ADD COLUMN commit_url TEXT",
            "CREATE INDEX runs_by_branch ON runs (branch, board_kind, board_id, config_fingerprint, started_epoch)",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]
SQLITE_LOCK_TIMEOUT_S = 30
_CHILD_TABLES = ("events", "counters", "metrics", "tests")


class StoreError(HilError):
    """The results store cannot be used (missing, corrupt, locked, unreachable, too new); the message says
    what to do. `hil` exits 3 on it, and `hil run` reports it and goes on (the results file is kept)."""


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
    interrupted: bool = False
    branch: str = ""
    commit: str | None = None
    commit_url: str | None = None
    started_epoch: float = 0.0


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
    branch: str = ""
    interrupted: bool = False
    commit: str | None = None


def _redacted(url: str) -> str:
    """A database URL without its password (it is shown in messages)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{credentials}{at}{host}"


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


def summarize_event(event: dict[str, Any]) -> str:
    """One human line for a console event (panic reason, abort PC, reset reason...)."""
    if isinstance(event.get("summary"), str) and event["summary"]:
        return event["summary"]
    for key in ("reason", "message", "text", "line", "description"):
        value = event.get(key)
        if isinstance(value, str) and value:
            return value
    return str(event.get("kind", "event"))


class Store:
    """A results store on SQLite or PostgreSQL. Use :func:`open_store` to get one.

    Every database failure (a corrupt or truncated file, a lock held too long, a server gone) surfaces as one
    :class:`StoreError` whose message names the store and the fix, never as a driver exception.
    """

    def __init__(
        self, db_url: str | Path = DEFAULT_DB, *, migrate_to: int | None = LATEST_VERSION, create: bool = True
    ) -> None:
        self.url = str(db_url)
        if self.url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self.shown = _redacted(self.url)
            self._conn = self._connect_postgres(self.url)
        else:
            self.dialect = "sqlite"
            self.path = _sqlite_path(self.url)
            self.shown = str(self.path)
            with self._guard():
                self._conn = self._connect_sqlite(self.path, create)
        with self._guard():
            if not create and self.schema_version() == 0:
                self.close()
                raise StoreError(
                    f"{self.shown} is not a results store (it has no tables): check --db, or import runs "
                    "first with `hil results import FILE...`"
                )
            if migrate_to is not None:
                self.migrate(migrate_to)

    @staticmethod
    def _connect_sqlite(path: Path, create: bool) -> sqlite3.Connection:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=SQLITE_LOCK_TIMEOUT_S, isolation_level=None)
        else:
            if not path.is_file():
                raise StoreError(
                    f"no results store at {path}: check --db, or import runs first with `hil results import FILE...`"
                )
            # mode=rw: never create a database at a mistyped path.
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=SQLITE_LOCK_TIMEOUT_S, isolation_level=None
            )
        # Autocommit mode: transactions are explicit (see _transaction), the same on both back ends.
        conn.execute("PRAGMA foreign_keys = ON")
        # WAL + NORMAL: one fsync per checkpoint instead of per import; still crash-safe for a results log.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _connect_postgres(self, url: str) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # psycopg is the optional `postgres` extra
            raise MissingToolError(
                "PostgreSQL stores need psycopg 3 (the postgres extra): pip install 'esp-smoltcp-hil[postgres]'"
            ) from exc
        try:
            return psycopg.connect(url, connect_timeout=15, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the results store {self.shown}: {str(exc).strip()}; check that the server "
                "runs and the URL (user, host, database) is right"
            ) from exc

    def _database_errors(self) -> tuple[type[BaseException], ...]:
        if self.dialect == "postgresql":
            import psycopg

            return (psycopg.Error,)
        return (sqlite3.Error,)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn a database driver's exception into a :class:`StoreError` that says what to do."""
        try:
            yield
        except self._database_errors() as exc:
            raise self._explain(exc) from exc

    def _explain(self, exc: BaseException) -> StoreError:
        text = sanitize(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if self.dialect == "postgresql":
            return StoreError(f"the results store {self.shown} failed: {text}; check the PostgreSQL server and the URL")
        lowered = text.lower()
        if any(word in lowered for word in ("not a database", "malformed", "encrypted")):
            return StoreError(
                f"the store {self.path} is corrupt ({text}): move it aside and rebuild it with "
                f"`hil results import {self.path.parent}/` (or the directory that holds its results files)"
            )
        if "locked" in lowered or "busy" in lowered:
            return StoreError(
                f"the store {self.path} stayed locked by another process for {SQLITE_LOCK_TIMEOUT_S} s ({text}): "
                "retry when the other `hil` command has finished"
            )
        if any(word in lowered for word in ("readonly", "read-only", "unable to open", "disk i/o", "permission")):
            return StoreError(
                f"cannot use the store {self.path} ({text}): check that its directory exists and is writable, "
                "or pass another --db"
            )
        return StoreError(f"the store {self.path} failed ({text}): check it with `sqlite3 {self.path} .dbinfo`")

    def close(self) -> None:
        """Close the connection."""
        with self._guard():
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

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of a query (fetched here, so a corrupt page is reported as a StoreError)."""
        with self._guard():
            return [tuple(row) for row in self._execute(sql, params).fetchall()]

    def _row(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._conn.cursor().executemany(self._sql(sql), rows)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._guard():
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
        """The store's schema version (0 for an empty database); reads only."""
        if self.dialect == "postgresql":
            exists = self._row("SELECT to_regclass('schema_version') IS NOT NULL")
        else:
            exists = self._row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if not exists or not exists[0]:
            return 0
        row = self._row("SELECT MAX(version) FROM schema_version")
        return int(row[0] or 0) if row else 0

    def migrate(self, target: int = LATEST_VERSION) -> int:
        """Apply the missing migrations up to ``target``; return the resulting version."""
        current = self.schema_version()
        if current > LATEST_VERSION:
            raise StoreError(
                f"the results store {self.shown} has schema v{current}, newer than this harness "
                f"understands (v{LATEST_VERSION}): upgrade esp-smoltcp-hil"
            )
        for version, description, statements in MIGRATIONS:
            if version > target or version <= current:
                continue
            with self._transaction():
                if self.dialect == "postgresql":
                    # Runners sharing one server may start together: serialise migrations on a fixed lock key.
                    self._execute("SELECT pg_advisory_xact_lock(7256001)")
                self._execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                    "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
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
        """Import one results document (validated here).

        Returns:
            ``(run_id, action)`` where action is ``"imported"``, ``"unchanged"`` (same run, same content) or
            ``"updated"`` (same run_id, new content: the run is replaced, its accepted flag kept).
        """
        doc = validate_document(doc)
        try:
            text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        except RecursionError as exc:
            raise ResultsError(f"results document {doc['run_id']!r:.80} is nested too deeply") from exc
        sha = hashlib.sha256(text.encode()).hexdigest()
        run_id = _clean(doc["run_id"])  # as stored in runs (sanitised, like every text column)
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
        row = {
            **run_row(doc),
            "source_dir": str(source_dir) if source_dir else None,
            "accepted": accepted,
            "imported_at": datetime.now(timezone.utc).isoformat(),
            "doc_sha256": sha,
            "document": text,
        }
        run_id = _clean(doc["run_id"])  # as stored in runs (sanitised, like every text column)
        # Every text column is sanitised (the document keeps the original): no control character or escape
        # sequence from a device or a hand-made file ever reaches a view through the store.
        values = tuple(_clean(value) if name != "document" else value for name, value in row.items())
        self._execute(
            f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            values,
        )
        tests, metrics, counters, events = [], [], [], []
        for i, test in enumerate(doc["tests"]):
            tests.append(
                (
                    run_id,
                    i,
                    _clean(test["nodeid"]),
                    test["outcome"],
                    _number_or_none(test.get("duration_s")),
                    _clean(test.get("console_slice")),
                    _clean(test.get("message") or ""),
                )
            )
            for j, metric in enumerate(test.get("metrics") or []):
                metrics.append(
                    (
                        run_id,
                        i,
                        j,
                        _clean(metric["name"]),
                        float(metric["value"]),
                        _clean(metric.get("unit") or ""),
                        metric["better"],
                    )
                )
            counters.extend((run_id, i, _clean(name), delta) for name, delta in (test.get("counters") or {}).items())
            for j, event in enumerate(test.get("events") or []):
                events.append(
                    (
                        run_id,
                        i,
                        j,
                        _clean(event["kind"]),
                        event.get("lineno"),
                        _clean(summarize_event(event)),
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
        return [row[0] for row in self._rows("SELECT run_id FROM runs ORDER BY started_epoch, run_id")]

    def latest_run_id(self) -> str:
        """The most recently started run.

        Raises:
            ResultsError: when the store holds no run.
        """
        row = self._row("SELECT run_id FROM runs ORDER BY started_epoch DESC, run_id DESC LIMIT 1")
        if not row:
            raise ResultsError(
                f"the results store {self.shown} holds no runs yet: import some with `hil results import FILE...`"
            )
        return row[0]

    def resolve_run_id(self, run_id: str | None) -> str:
        """Return ``run_id`` if the store has it (default: the latest run)."""
        if run_id is None:
            return self.latest_run_id()
        run_id = sanitize(run_id)  # run ids are stored sanitised
        if not self._row("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)):
            raise ResultsError(f"no run {run_id!r} in {self.shown}; `hil results list` shows the stored runs")
        return run_id

    def list_runs(self, limit: int | None = None) -> list[RunSummary]:
        """Runs, newest first, with their test outcome counts."""
        sql = (
            "SELECT run_id, started, board_kind, board_id, fw_app_version, config_fingerprint, accepted, "
            "interrupted, branch, commit_sha, commit_url, started_epoch FROM runs "
            "ORDER BY started_epoch DESC, run_id DESC"
        )
        rows = self._rows(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        counts: dict[str, dict[str, int]] = {}
        for run_id, outcome, count in self._rows(
            "SELECT run_id, outcome, COUNT(*) FROM tests GROUP BY run_id, outcome"
        ):
            counts.setdefault(run_id, {})[outcome] = int(count)
        return [
            RunSummary(
                r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), counts.get(r[0], {}), bool(r[7]), r[8], r[9], r[10],
                float(r[11]),
            )
            for r in rows
        ]  # fmt: skip

    def document(self, run_id: str) -> dict[str, Any]:
        """The results document as imported."""
        row = self._row("SELECT document FROM runs WHERE run_id = ?", (self.resolve_run_id(run_id),))
        assert row is not None
        return json.loads(row[0])

    def documents(self) -> list[dict[str, Any]]:
        """Every stored results document, oldest first."""
        return [json.loads(row[0]) for row in self._rows("SELECT document FROM runs ORDER BY started_epoch, run_id")]

    def run_info(self, run_id: str) -> dict[str, Any]:
        """The ``runs`` row of one run as a dict."""
        with self._guard():
            cursor = self._execute("SELECT * FROM runs WHERE run_id = ?", (self.resolve_run_id(run_id),))
            names = [column[0] for column in cursor.description]
            info = dict(zip(names, cursor.fetchone(), strict=True))
        info.pop("document")
        info["accepted"] = bool(info["accepted"])
        info["interrupted"] = bool(info["interrupted"])
        return info

    def set_accepted(self, run_id: str, accepted: bool) -> None:
        """Include (accepted) or exclude (rejected) a run from the baselines of later runs."""
        run_id = self.resolve_run_id(run_id)
        with self._transaction():
            self._execute("UPDATE runs SET accepted = ? WHERE run_id = ?", (int(accepted), run_id))

    def metric_rows(
        self,
        *,
        board: tuple[str, str] | None = None,
        config_fingerprint: str | None = None,
        run_id: str | None = None,
        branch: str | None = None,
    ) -> list[MetricRow]:
        """Metric values joined with run identity and test outcome, oldest run first."""
        sql = (
            "SELECT r.run_id, r.started_epoch, r.board_kind, r.board_id, r.config_fingerprint, r.accepted, "
            "t.nodeid, t.outcome, m.name, m.value, m.unit, m.better, r.branch, r.interrupted, r.commit_sha "
            "FROM metrics m JOIN tests t ON t.run_id = m.run_id AND t.idx = m.test_idx "
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
        if branch is not None:
            where.append("r.branch = ?")
            params.append(branch)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.started_epoch, r.run_id, m.test_idx, m.idx"
        return [
            MetricRow(
                r[0], float(r[1]), r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8], float(r[9]), r[10], r[11],
                r[12], bool(r[13]), r[14],
            )
            for r in self._rows(sql, params)
        ]  # fmt: skip

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
            for r in self._rows(
                "SELECT idx, nodeid, outcome, duration_s, console_slice, message FROM tests "
                "WHERE run_id = ? ORDER BY idx",
                (run_id,),
            )
        ]
        for test_idx, name, value, unit, better in self._rows(
            "SELECT test_idx, name, value, unit, better FROM metrics WHERE run_id = ? ORDER BY test_idx, idx", (run_id,)
        ):
            tests[test_idx]["metrics"].append({"name": name, "value": value, "unit": unit, "better": better})
        for test_idx, name, delta in self._rows(
            "SELECT test_idx, name, delta FROM counters WHERE run_id = ? ORDER BY test_idx, name", (run_id,)
        ):
            tests[test_idx]["counters"][name] = int(delta)
        for test_idx, kind, lineno, summary, detail in self._rows(
            "SELECT test_idx, kind, lineno, summary, detail FROM events WHERE run_id = ? ORDER BY test_idx, idx",
            (run_id,),
        ):
            tests[test_idx]["events"].append(
                {"kind": kind, "lineno": lineno, "summary": summary, "detail": json.loads(detail)}
            )
        return tests


def run_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``runs`` columns of a validated results document that describe the run (no store bookkeeping)."""
    board = doc.get("board") or {}
    firmware = doc.get("firmware") or {}
    components = firmware.get("components") or {}
    link = doc.get("link") or {}
    config = doc.get("config") or {}
    source = doc.get("source") or {}
    return {
        "run_id": doc["run_id"],
        "started": doc["started"],
        "started_epoch": parse_time(doc["started"], "started"),
        "finished": doc.get("finished"),
        "board_kind": board.get("kind") or "unknown",
        "board_id": board.get("id") or board.get("mac") or "unknown",
        "board_mac": board.get("mac"),
        "fw_app": firmware.get("app"),
        "fw_app_version": firmware.get("app_version"),
        "fw_elf_sha256": firmware.get("elf_sha256"),
        "fw_chip": firmware.get("chip"),
        "fw_chip_rev": firmware.get("chip_rev"),
        "fw_git_commit": firmware.get("git_commit") or firmware.get("commit"),
        "idf_version": firmware.get("idf"),
        "esp_smoltcp_version": components.get("esp_smoltcp"),
        "harness_version": doc.get("harness_version"),
        "host": doc.get("host"),
        "config_fingerprint": config.get("fingerprint") or "",
        "link_kind": link.get("kind"),
        "link_rate_mbps": _number_or_none(link.get("rate_mbps")),
        "console_log": doc.get("console_log"),
        "interrupted": int(bool(doc.get("interrupted"))),
        "commit_sha": source.get("commit"),
        "branch": source.get("branch") or "",
        "base_branch": source.get("base_branch"),
        "pr": source.get("pr"),
        "ci_job_url": source.get("ci_job_url"),
        "commit_url": source.get("commit_url"),
    }


def document_metric_rows(doc: dict[str, Any], accepted: bool = True) -> list[MetricRow]:
    """The metric rows of a validated results document, as :meth:`Store.metric_rows` would give them."""
    run = {key: _clean(value) for key, value in run_row(doc).items()}
    return [
        MetricRow(
            run["run_id"], run["started_epoch"], run["board_kind"], run["board_id"], run["config_fingerprint"],
            accepted, _clean(test["nodeid"]), test["outcome"], _clean(metric["name"]), float(metric["value"]),
            _clean(metric.get("unit") or ""), metric["better"], run["branch"], bool(run["interrupted"]),
            run["commit_sha"],
        )
        for test in doc["tests"]
        for metric in test.get("metrics") or []
    ]  # fmt: skip


def _clean(value: Any) -> Any:
    return sanitize(value) if isinstance(value, str) else value


def _number_or_none(value: Any) -> float | None:
    return float(value) if is_finite_number(value) else None


def open_store(db_url: str | Path = DEFAULT_DB, *, create: bool = True) -> Store:
    """Open (migrating when needed) the results store at ``db_url``.

    Args:
        create: create the store when it does not exist (imports); read-only commands pass False, so a
            mistyped ``--db`` is an error instead of a new empty database.

    Raises:
        StoreError: the store is missing (``create=False``), corrupt, locked, unreachable or too new.
    """
    return Store(db_url, create=create)


def import_results_file(path: str | Path, db_url: str | Path = DEFAULT_DB) -> str:
    """Import one results file into the store at ``db_url`` and return its run id (what `hil run` calls).

    Raises:
        ResultsError: the file is not a valid results file.
        StoreError: the store cannot be used. Both are :class:`~harness.errors.HilError` with a one-line fix.
    """
    with open_store(db_url) as store:
        run_id, _ = store.import_file(path)
    return run_id
