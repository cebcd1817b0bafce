"""A real PostgreSQL server for the tests (fixtures; imported by tests/plugins/test_postgres_store.py).

Where the server comes from, in order:

1. ``ABSTRACTRUNTIME_TEST_POSTGRES_DSN`` (CI sets it from ``.ci/postgres.sh``): it must work, else the tests fail;
2. a throwaway cluster started here: ``initdb`` / ``pg_ctl`` from PATH or ``/usr/lib/postgresql/*/bin``, in a
   temporary directory, on 127.0.0.1 and a free port, durability off; as root the cluster runs as the ``postgres``
   OS user (initdb refuses root). It is stopped and removed at the end of the session;
3. otherwise the tests are skipped with the reason -- but never in CI (``CI`` set): there a missing server fails.

Each test gets its own database (``fresh_dsn(key)``: created on first use, the same database for the same key,
dropped at the end of the session).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlsplit, urlunsplit

import pytest

DSN_ENV = "ABSTRACTRUNTIME_TEST_POSTGRES_DSN"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"PostgreSQL is required in CI but not available: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server for the postgres store tests: {reason}. Set {DSN_ENV}="
                f"postgresql://user@host:port/db (a role with CREATEDB), or install the PostgreSQL server "
                f"binaries (Debian: apt-get install postgresql), or run: eval \"$(bash .ci/postgres.sh)\"")


def _find_bin() -> Optional[Path]:
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[4].split(".")],
                        reverse=True)
    for d in candidates:
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_db(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


class PostgresServer:
    """A server the tests may create databases on."""

    def __init__(self, admin_dsn: str, cluster: Optional["_Cluster"] = None) -> None:
        self.admin_dsn = admin_dsn
        self.cluster = cluster
        self._created: List[str] = []

    def database_name(self, key: str) -> str:
        """Unique to this test session (the process id is part of it), so two test sessions on one server -- two
        checkouts, or CI and a developer -- never share a database."""
        return "ar_test_" + hashlib.sha1(f"{os.getpid()}:{key}".encode()).hexdigest()[:20]

    def fresh_dsn(self, key: str) -> str:
        """The DSN of the database for ``key`` (created empty on first use)."""
        import psycopg

        name = self.database_name(key)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
                self._created.append(name)
        return _with_db(self.admin_dsn, name)

    def drop(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        for name in self._created:
            try:
                self.drop(name)
            except Exception:  # pragma: no cover - best effort
                pass
        self._created.clear()
        if self.cluster is not None:
            self.cluster.stop()


class _Cluster:
    """A throwaway cluster: initdb + pg_ctl in a temporary directory."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="abstractruntime-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user_prefix: List[str] = []
        if os.geteuid() == 0:
            owner = "postgres"
            try:
                subprocess.run(["id", owner], check=True, capture_output=True)
            except (OSError, subprocess.CalledProcessError):
                raise RuntimeError("running as root and there is no 'postgres' OS user to run initdb as "
                                   "(initdb refuses root); create one or set " + DSN_ENV) from None
            shutil.chown(self.root, owner, owner)
            runuser = shutil.which("runuser")
            self.user_prefix = [runuser, "-u", owner, "--"] if runuser else ["su", owner, "-s", "/bin/sh", "-c"]

    def _run(self, args: List[str], **kw) -> subprocess.CompletedProcess:
        if self.user_prefix and self.user_prefix[0] == "su":
            import shlex

            return subprocess.run(self.user_prefix + [" ".join(shlex.quote(a) for a in args)], **kw)
        return subprocess.run(self.user_prefix + args, **kw)

    def start(self) -> str:
        out = self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                         "--encoding=UTF8", "--locale=C", "-N"], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.stderr.strip() or out.stdout.strip()}")
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        out = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                         "-w", "-t", "60", "-o", opts, "start"], capture_output=True, text=True, timeout=90)
        if out.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {out.stderr.strip() or out.stdout.strip()} {log[-2000:]}")
        self._watchdog()
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _watchdog(self) -> None:
        """A detached shell that stops the cluster if this process dies without tearing it down (killed by a
        timeout, SIGKILL): pg_ctl daemonises the server, which would otherwise outlive us."""
        import shlex

        stop = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        if self.user_prefix and self.user_prefix[0] == "su":
            stop_cmd = " ".join(shlex.quote(a) for a in self.user_prefix + [" ".join(shlex.quote(a) for a in stop)])
        else:
            stop_cmd = " ".join(shlex.quote(a) for a in self.user_prefix + stop)
        script = (f"while kill -0 {os.getpid()} 2>/dev/null && [ -d {shlex.quote(str(self.data))} ]; do sleep 1; done; "
                  f"if [ -d {shlex.quote(str(self.data))} ]; then {stop_cmd}; rm -rf {shlex.quote(str(self.root))}; fi")
        subprocess.Popen(["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        try:
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                      capture_output=True, timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _connects(dsn: str, timeout: float = 15.0) -> Optional[str]:
    """None if a connection works (retrying briefly), else the error."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return None
        except psycopg.Error as exc:
            if time.monotonic() >= deadline:
                return str(exc).strip()
            time.sleep(0.2)


@pytest.fixture(scope="session")
def psycopg_installed() -> None:
    """psycopg and psycopg_pool importable; skips (fails in CI) otherwise."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        _unavailable(f"psycopg is not installed ({exc}; pip install 'abstractruntime[postgres]')")


@pytest.fixture(scope="session")
def postgres_server(psycopg_installed):
    """The session's PostgreSQL server (see the module doc); skips or fails when there is none."""
    dsn = os.environ.get(DSN_ENV, "").strip()
    if dsn:
        error = _connects(dsn)
        if error is not None:
            pytest.fail(f"{DSN_ENV} is set but the server does not answer: {error}", pytrace=False)
        server = PostgresServer(dsn)
    else:
        bindir = _find_bin()
        if bindir is None:
            _unavailable(f"{DSN_ENV} is not set and no initdb/pg_ctl was found on PATH or in "
                         f"/usr/lib/postgresql/*/bin")
        try:
            cluster = _Cluster(bindir)
        except RuntimeError as exc:
            _unavailable(str(exc))
        try:
            admin = cluster.start()
            error = _connects(admin)
            if error is not None:
                raise RuntimeError(error)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            cluster.stop()
            _unavailable(f"could not start a throwaway cluster with {bindir}: {exc}")
        server = PostgresServer(admin, cluster)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_dsn(postgres_server, request) -> str:
    """A fresh, empty database for this test."""
    return postgres_server.fresh_dsn(request.node.nodeid)
