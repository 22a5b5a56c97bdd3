"""The proxy process: standalone addon, kill -9 and restart, schema refusal, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import sqlalchemy as sa

from tests.support.proxy import _wait_port, free_port, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage import models as m
from tracetap.storage.db import make_engine, upgrade

TOOLS = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]


def _count(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(m.Round)).scalar_one()
    engine.dispose()
    return n


def _ask(url: str, n: int) -> list[str]:
    client = anthropic.Anthropic(base_url=url, api_key="sk-ant-api03-life", max_retries=0)
    ids = []
    for i in range(n):
        msg = client.messages.create(
            model="claude-life",
            max_tokens=20,
            tools=TOOLS,
            messages=[{"role": "user", "content": f"task {i}"}],
            extra_headers={"X-Claude-Code-Session-Id": f"life-{i}"},
        )
        ids.append(msg.id)
    return ids


def test_standalone_addon_in_mitmdump(tmp_path: Path, scripted_upstream: ScriptedUpstream) -> None:
    """`mitmdump -s tracetap/proxy/capture.py`, configured by mitmproxy options."""
    import tracetap.proxy.capture as capture

    port = free_port()
    db = f"sqlite:///{tmp_path / 'standalone.db'}"
    log = tmp_path / "mitmdump.log"
    mitmdump = str(Path(sys.executable).with_name("mitmdump"))
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                mitmdump,
                "-q",
                "-s",
                capture.__file__,
                "--mode",
                f"reverse:{scripted_upstream.url}@{port}",
                "--set",
                f"tracetap_db={db}",
                "--set",
                f"tracetap_journal_dir={tmp_path / 'journal'}",
                "--set",
                f"confdir={tmp_path / 'mitm'}",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_port(port, proc, log)
        ids = _ask(f"http://127.0.0.1:{port}", 2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert _count(db) == 2, log.read_text()
    engine = make_engine(db)
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(m.Round.response_id)).scalars()) == set(ids)


def test_kill_9_then_restart_loses_nothing(
    tmp_path: Path, scripted_upstream: ScriptedUpstream
) -> None:
    """Rounds journaled while the database was unavailable survive a SIGKILL."""
    mitm = tmp_path / "mitm"
    proxy = start_proxy(tmp_path / "p", confdir=mitm, anthropic_upstream=scripted_upstream.url)
    journal = proxy.journal_dir / "journal.bin"
    engine = make_engine(proxy.db_url)
    with engine.connect() as lock:
        lock.exec_driver_sql("BEGIN EXCLUSIVE")  # the writer cannot commit now
        ids = _ask(proxy.anthropic_url, 5)  # traffic still flows
        deadline = time.time() + 30
        while time.time() < deadline and journal.stat().st_size == 0:
            time.sleep(0.05)
        time.sleep(0.5)
        proxy.stop(signal.SIGKILL)  # no flush, no goodbye
        lock.exec_driver_sql("ROLLBACK")
    assert _count(proxy.db_url) == 0 and journal.stat().st_size > 0
    again = start_proxy(
        tmp_path / "p",
        confdir=mitm,
        anthropic_upstream=scripted_upstream.url,
        db_url=proxy.db_url,
        journal_dir=proxy.journal_dir,
    )
    again.stop()  # replayed at start-up, before it even served traffic
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.select(m.Round.response_id)).scalars()) == sorted(ids)


def test_proxy_refuses_an_unknown_schema(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'future.db'}"
    engine = make_engine(db)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracetap",
            "proxy",
            "--db",
            db,
            "--anthropic-port",
            str(free_port()),
            "--openai-port",
            "0",
            "--journal-dir",
            str(tmp_path / "j"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown to this tracetap" in proc.stderr


def test_db_check_says_what_to_run(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "tracetap", "db", "check", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and f"tracetap db upgrade --db {db}" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "tracetap", "db", "upgrade", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and f"-> {m.SCHEMA_VERSION}" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "tracetap", "db", "check", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def test_ingest_workers_record_every_session_and_leave_no_process(
    tmp_path: Path, scripted_upstream: ScriptedUpstream
) -> None:
    """--ingest-workers 2: every session's rounds stored; on SIGTERM and on SIGKILL of the
    proxy, the ingest process and its workers go too."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proxy = start_proxy(
            tmp_path / f"p{sig}",
            confdir=tmp_path / "mitm",
            anthropic_upstream=scripted_upstream.url,
            extra_args=["--ingest-workers", "2"],
        )
        ids = _ask(proxy.anthropic_url, 6)
        below = _descendants(proxy.proc.pid)
        spawned = [
            pid for pid in below if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(spawned) == 3  # the ingest process and its two workers
        if sig == signal.SIGTERM:
            proxy.stop(sig)
        else:
            deadline = time.time() + 30
            while time.time() < deadline and _count(proxy.db_url) < 6:
                time.sleep(0.05)
            proxy.stop(sig)
        deadline = time.time() + 20
        while time.time() < deadline and _alive(below):
            time.sleep(0.1)
        assert not _alive(below), "processes left behind"
        engine = make_engine(proxy.db_url)
        with engine.connect() as conn:
            assert sorted(conn.execute(sa.select(m.Round.response_id)).scalars()) == sorted(ids)
        engine.dispose()
