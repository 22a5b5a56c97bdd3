"""The proxy process: standalone addon, kill -9 and restart, schema refusal, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import sqlalchemy as sa

import tracetap.proxy.capture as capture
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


def _mitmdump(tmp_path: Path, upstream: str, port: int, *sets: str) -> subprocess.Popen[bytes]:
    mitmdump = str(Path(sys.executable).with_name("mitmdump"))
    args = [mitmdump, "-q", "-s", capture.__file__, "--mode", f"reverse:{upstream}@{port}"]
    for value in (f"confdir={tmp_path / 'mitm'}", *sets):
        args += ["--set", value]
    with open(tmp_path / "mitmdump.log", "wb") as fh:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT)


def test_standalone_addon_in_mitmdump(tmp_path: Path, scripted_upstream: ScriptedUpstream) -> None:
    """`mitmdump -s tracetap/proxy/capture.py`, configured by mitmproxy options."""
    port = free_port()
    db = f"sqlite:///{tmp_path / 'standalone.db'}"
    log = tmp_path / "mitmdump.log"
    proc = _mitmdump(
        tmp_path,
        scripted_upstream.url,
        port,
        f"tracetap_db={db}",
        f"tracetap_journal_dir={tmp_path / 'journal'}",
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


def test_standalone_addon_takes_the_proxy_settings(
    tmp_path: Path, scripted_upstream: ScriptedUpstream
) -> None:
    """Every recording option of `tracetap proxy` is a `tracetap_<name>` mitmproxy option:
    here the content level (none: no text reaches the store) and the admin port."""
    port, admin = free_port(), free_port()
    db = f"sqlite:///{tmp_path / 'none.db'}"
    log = tmp_path / "mitmdump.log"
    proc = _mitmdump(
        tmp_path,
        scripted_upstream.url,
        port,
        f"tracetap_db={db}",
        f"tracetap_journal_dir={tmp_path / 'journal'}",
        "tracetap_content=none",
        f"tracetap_admin_port={admin}",
        "tracetap_max_body=65536",
    )
    try:
        _wait_port(port, proc, log)
        _ask(f"http://127.0.0.1:{port}", 1)
        _wait_port(admin, proc, log)
        health = httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=10)
        assert health.status_code == 200, health.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert _count(db) == 1, log.read_text()
    stored = (tmp_path / "none.db").read_bytes()
    assert b"task 0" not in stored  # the prompt's text, kept only with content full/redacted


def test_standalone_addon_refuses_a_bad_setting(
    tmp_path: Path, scripted_upstream: ScriptedUpstream
) -> None:
    proc = _mitmdump(tmp_path, scripted_upstream.url, free_port(), "tracetap_content=partial")
    assert proc.wait(60) != 0
    assert "unknown content level 'partial'" in (tmp_path / "mitmdump.log").read_text()


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
