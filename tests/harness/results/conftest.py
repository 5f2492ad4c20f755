"""Fixtures for the results tests: a real PostgreSQL server, store URLs for both back ends, history files."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _postgres_bin() -> Path | None:
    for directory in sorted(glob.glob(PG_BIN_GLOB), reverse=True):
        if all((Path(directory) / tool).exists() for tool in ("initdb", "postgres")):
            return Path(directory)
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL server on a Unix socket in a temp dir; yields the socket directory.

    Runs as the ``postgres`` user when we are root (initdb refuses root). Stopped by PID at teardown.
    """
    import psycopg

    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL server binaries not found under {PG_BIN_GLOB} (apt-get install postgresql)")
    run_as = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="hil-rs-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if run_as:
        account = pwd.getpwnam(run_as)
        for path in (base, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    server = None
    try:
        subprocess.run(
            [bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "hil", "--no-sync", "-E", "UTF8"],
            user=run_as,
            check=True,
            capture_output=True,
            timeout=120,
        )
        server = subprocess.Popen(
            [
                bin_dir / "postgres",
                "-D",
                data,
                "-k",
                sockets,
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=20",
                "-c",
                "shared_buffers=16MB",
            ],
            user=run_as,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"postgresql://hil@/postgres?host={quote(str(sockets), safe='')}"
        deadline = time.monotonic() + 60
        while True:
            # Poll until the postmaster accepts connections (it has no readiness notification on a pipe).
            try:
                psycopg.connect(url, connect_timeout=5).close()
                break
            except psycopg.OperationalError as exc:
                if server.poll() is not None:
                    raise RuntimeError(f"postgres exited: {server.stderr.read().decode()[-2000:]}") from exc
                if time.monotonic() > deadline:
                    raise RuntimeError("postgres did not accept connections within 60 s") from exc
                time.sleep(0.1)
        yield str(sockets)
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)  # fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server."""
    import psycopg

    name = f"hil_{uuid.uuid4().hex[:12]}"
    host = quote(postgres_server, safe="")
    with psycopg.connect(f"postgresql://hil@/postgres?host={host}", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://hil@/{name}?host={host}"
    with psycopg.connect(f"postgresql://hil@/postgres?host={host}", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL on each back end."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "hil.sqlite")
    return request.getfixturevalue("postgres_url")
