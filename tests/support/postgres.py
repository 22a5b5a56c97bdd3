"""Pytest plugin: a real PostgreSQL server (Debian's `postgresql` package) started by the tests.

initdb + pg_ctl into a temp dir on a free loopback port; as root, the server runs as the
`postgres` system user (initdb refuses root). `.ci/run` installs the package when missing.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.proxy import free_port

__all__ = ["PostgresServer", "pg_server", "pg_url"]

_MISSING = (
    "PostgreSQL server binaries are missing (no /usr/lib/postgresql/*/bin/pg_ctl): "
    "run `apt-get install postgresql` (.ci/run does this)"
)
_HBA = (
    "# tracetap test cluster: trust, loopback and the private socket only\n"
    "local all all trust\n"
    "host  all all 127.0.0.1/32 trust\n"
)


def _bin_dir() -> Path:
    """The bin dir of the highest installed PostgreSQL major version."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
    )
    if not found:
        raise RuntimeError(_MISSING)
    return Path(found[-1]).parent


def _is_postgres(pid: int) -> bool:
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class PostgresServer:
    """One throwaway cluster; stop() and start() keep its data dir and port (outage tests)."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.version = int(self.bin.parts[-2])
        self.root = Path(tempfile.mkdtemp(prefix="tt-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.as_root = os.geteuid() == 0
        atexit.register(self.close)  # even if pytest dies before the session teardown
        try:
            if self.as_root:
                shutil.chown(self.root, "postgres", "postgres")
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
            self._write(self.data / "pg_hba.conf", _HBA)
            self._start_on_free_port()
        except BaseException:
            self.close()
            raise

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self.as_root:
            shutil.chown(path, "postgres", "postgres")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}\n{log}"
            )
        return proc

    def _start_on_free_port(self) -> None:
        """First start: another process may grab the probed port first, so retry a few."""
        for attempt in range(5):
            self.port = free_port()
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == 4:
                    raise

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default `postgres` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, db: str = "postgres") -> str:
        """libpq connection string over TCP loopback."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={db}"

    def start(self) -> None:
        """Start (or restart) the cluster on its port; returns once it accepts connections."""
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        """Stop the server (fast: clients are disconnected); the data dir stays."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def is_running(self) -> bool:
        """True when a client can connect right now."""
        try:
            with psycopg.connect(self.dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str | None = None) -> str:
        """CREATE DATABASE (a unique name by default) and return its SQLAlchemy URL."""
        name = name or "t" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        """Drop the database named by `url`, disconnecting anyone still using it."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def postmaster_pid(self) -> int | None:
        """PID of the running postmaster, from its pid file (None when stopped)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        """Stop immediately and delete everything; safe to call twice."""
        if not self.root.exists():
            return
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
            pid = self.postmaster_pid()
            if pid is not None and _is_postgres(pid):  # pg_ctl failed: never leave one behind
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session, removed at the end even on failures."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server; dropped after the test."""
    if not pg_server.is_running():  # an earlier test stopped it and failed before start()
        pg_server.start()
    url = pg_server.create_database()
    yield url
    if not pg_server.is_running():
        pg_server.start()
    pg_server.drop_database(url)
