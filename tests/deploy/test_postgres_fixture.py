"""The PostgreSQL test server is real: psycopg and SQLAlchemy talk to it over loopback only,
its data survives stop/start, each test gets a fresh database and nothing outlives the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tests.support.postgres import PostgresServer

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]


def _listening(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


def test_sqlalchemy_and_psycopg_reach_a_real_server(pg_url: str, pg_server: PostgresServer) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE rounds (id serial PRIMARY KEY, body jsonb NOT NULL)"))
        conn.execute(
            sa.text("INSERT INTO rounds (body) VALUES (CAST(:b AS jsonb))"),
            [{"b": json.dumps({"n": n})} for n in range(3)],
        )
    engine.dispose()
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.dsn(name)) as conn:
        total = conn.execute("SELECT sum((body->>'n')::int) FROM rounds").fetchone()[0]
        version = conn.execute("SHOW server_version_num").fetchone()[0]
    assert total == 0 + 1 + 2
    assert int(version) // 10000 == pg_server.version >= 15
    assert pg_server.url.startswith("postgresql+psycopg://postgres@127.0.0.1:")


def test_each_test_gets_an_empty_database(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        ).scalar_one()
    engine.dispose()
    assert tables == 0  # the previous test's table lived in another database


def test_only_loopback_listens(pg_server: PostgresServer) -> None:
    assert _listening(pg_server.port) == {"0100007F"}  # 127.0.0.1, little-endian hex
    with psycopg.connect(pg_server.dsn()) as conn:
        addr, listen = conn.execute(
            "SELECT host(inet_server_addr()), current_setting('listen_addresses')"
        ).fetchone()
        assert (addr, listen) == ("127.0.0.1", "127.0.0.1")
        assert conn.execute("SHOW fsync").fetchone()[0] == "off"
    socket_dir = pg_server.root
    assert (socket_dir / f".s.PGSQL.{pg_server.port}").exists()


def test_stop_and_start_keep_the_data_and_port(pg_server: PostgresServer) -> None:
    url = pg_server.create_database()
    engine = sa.create_engine(url, pool_pre_ping=True)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE kept (v text)"))
        conn.execute(sa.text("INSERT INTO kept VALUES ('before the outage')"))
    port = pg_server.port
    pg_server.stop()
    try:
        assert not pg_server.is_running()
        assert _listening(port) == set()
        with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        started = time.monotonic()
        pg_server.start()
    assert time.monotonic() - started < 10
    assert pg_server.is_running() and pg_server.port == port
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT v FROM kept")).scalar_one() == "before the outage"
    engine.dispose()
    pg_server.drop_database(url)


_INNER = """
import json, os
from pathlib import Path
import psycopg

OUT = Path(os.environ["PG_PROBE_OUT"])

def test_a_records(pg_server, pg_url):
    OUT.write_text(json.dumps({"pid": pg_server.postmaster_pid(), "root": str(pg_server.root),
                               "db": pg_url.rsplit("/", 1)[1]}))

def test_b_previous_database_was_dropped_then_fails(pg_server):
    seen = json.loads(OUT.read_text())
    with psycopg.connect(pg_server.dsn()) as conn:
        rows = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (seen["db"],))
        assert rows.fetchone() is None
    assert False, "deliberate failure: the server must still be cleaned up"
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[1].split()[0] != "Z"  # a zombie is already gone


def test_a_failing_session_leaves_no_server_behind(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(_INNER)
    out = tmp_path / "probe.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PG_PROBE_OUT": str(out)}
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.support.postgres",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(tmp_path / "test_inner.py"),
        ],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout
    assert "deliberate failure" in proc.stdout  # test_b got past the dropped-database check
    seen = json.loads(out.read_text())
    assert seen["pid"] and not _alive(seen["pid"])
    assert not Path(seen["root"]).exists()
    assert elapsed < 30  # startup, two tests and teardown: a few seconds


def test_missing_binaries_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.support.postgres as plugin

    monkeypatch.setattr(plugin.glob, "glob", lambda pattern: [])
    with pytest.raises(RuntimeError, match=r"apt-get install postgresql"):
        PostgresServer()
