"""Private by default: what a proxy records is readable by its user alone (files 0600,
directories 0700, whatever umask it was started with), no database password is printed, and the
unauthenticated admin endpoints stay on loopback unless an address is given."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.support.listening import listening_addresses, outside_address
from tests.support.proxy import RunningProxy, free_port, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.cli.proxy import _instructions
from tracetap.settings import Settings
from tracetap.storage.db import data_dir, default_url, display_url, hide_passwords, make_engine

SECRET_URL = "postgresql://u:secret@127.0.0.1:9/x"  # nothing listens on port 9


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _modes(root: Path) -> dict[str, int]:
    """Every file and directory under `root` (itself included) -> its permission bits."""
    out = {str(root): _mode(root)}
    for path in root.rglob("*"):
        out[str(path)] = _mode(path)
    return out


def _assert_private(root: Path) -> None:
    modes = _modes(root)
    wrong = {
        p: oct(m)
        for p, m in modes.items()
        if m != (0o700 if Path(p).is_dir() and not Path(p).is_symlink() else 0o600)
    }
    assert not wrong, wrong


def _rounds(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM rounds").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _ask(url: str) -> None:
    client = anthropic.Anthropic(base_url=url, api_key="sk-ant-api03-private", max_retries=0)
    client.messages.create(
        model="claude-private",
        max_tokens=20,
        messages=[{"role": "user", "content": "my private work"}],
        extra_headers={"X-Claude-Code-Session-Id": "private-1"},
    )


# -- files 0600, directories 0700 --------------------------------------------------------------


def test_recorded_files_are_private_whatever_the_umask(
    tmp_path: Path, mitm_confdir: Path, scripted_upstream: ScriptedUpstream
) -> None:
    """The store (and SQLite's -wal/-shm), the journal and the spool are 0600 in 0700
    directories, though the proxy is started with the common umask 022."""
    store = tmp_path / "store"  # neither directory exists yet: the proxy creates both
    db, journal = store / "tracetap.db", tmp_path / "journal"
    with _umask(0o022):
        proxy = start_proxy(
            tmp_path / "run",
            confdir=mitm_confdir,
            anthropic_upstream=scripted_upstream.url,
            db_url=f"sqlite:///{db}",
            journal_dir=journal,
        )
    try:
        _ask(proxy.anthropic_url)
        deadline = time.monotonic() + 60
        while _rounds(db) < 1:
            assert time.monotonic() < deadline, proxy.log.read_text()
            assert proxy.proc.poll() is None, proxy.log.read_text()
            time.sleep(0.1)
        # while it runs: the WAL and its index exist beside the database
        assert {p.name for p in store.iterdir()} >= {"tracetap.db", "tracetap.db-wal"}
        _assert_private(store)
        _assert_private(journal)
        assert any(p.is_file() for p in journal.rglob("*"))
    finally:
        assert proxy.stop() == 0, proxy.log.read_text()
    _assert_private(store)
    _assert_private(journal)
    assert _rounds(db) == 1


def test_the_data_directory_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tracetap's own data directory is created 0700, and tightened when an older version left
    it open; a directory the user names keeps the mode the user gave it."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.delenv("TRACETAP_DB", raising=False)
    own = tmp_path / "share" / "tracetap"
    with _umask(0o022):
        assert data_dir() == own and _mode(own) == 0o700
        own.chmod(0o755)  # as tracetap used to leave it
        engine = make_engine(default_url())
        with engine.connect():
            pass
        engine.dispose()
        assert _mode(own) == 0o700 and _mode(own / "tracetap.db") == 0o600
        mine = tmp_path / "mine"
        mine.mkdir(mode=0o755)
        make_engine(f"sqlite:///{mine / 'a.db'}").dispose()
        assert _mode(mine) == 0o755 and _mode(mine / "a.db") == 0o600
        make_engine(f"sqlite:///{tmp_path / 'new' / 'b.db'}").dispose()
        assert _mode(tmp_path / "new") == 0o700


# -- no password on the terminal ---------------------------------------------------------------


def test_display_url_hides_the_password() -> None:
    assert display_url(SECRET_URL) == "postgresql://u:***@127.0.0.1:9/x"
    assert display_url("postgresql://u:p%40ss@db/x") == "postgresql://u:***@db/x"
    assert display_url("sqlite:///tmp/traces.db") == "sqlite:///tmp/traces.db"
    assert display_url("not a url") == "not a url"
    # what SQLAlchemy cannot parse still loses its password
    assert "secret" not in display_url("postgresql://u:secret@db:port/x")
    message = hide_passwords(
        "auth failed for p@ss (postgresql://u:p%40ss@db/x)", "postgresql://u:p%40ss@db/x"
    )
    assert "p@ss" not in message and "p%40ss" not in message


def test_the_start_banner_hides_the_password(tmp_path: Path) -> None:
    cfg = Settings(db=SECRET_URL, admin_port=9090)
    banner = _instructions(cfg, SECRET_URL, tmp_path)
    assert "secret" not in banner
    assert "tracetap is recording into postgresql://u:***@127.0.0.1:9/x" in banner


def test_a_proxy_on_an_unreachable_store_never_prints_the_password(
    tmp_path: Path, mitm_confdir: Path
) -> None:
    """It records into the journal meanwhile; its warning and banner name the store."""
    proxy = start_proxy(
        tmp_path, confdir=mitm_confdir, anthropic_upstream="http://127.0.0.1:9", db_url=SECRET_URL
    )
    try:
        deadline = time.monotonic() + 30
        while "Ctrl-C stops it" not in proxy.log.read_text():
            assert time.monotonic() < deadline, proxy.log.read_text()
            time.sleep(0.05)
    finally:
        proxy.stop()
    log = proxy.log.read_text()
    assert "secret" not in log
    assert "tracetap is recording into postgresql://u:***@127.0.0.1:9/x" in log


def test_a_running_proxy_never_prints_the_password(
    tmp_path: Path, mitm_confdir: Path, pg_url: str
) -> None:
    """A real PostgreSQL store (the test server trusts loopback, so any password connects)."""
    url = pg_url.replace("://postgres@", "://postgres:secret@")
    assert "secret" in url
    proxy = start_proxy(
        tmp_path, confdir=mitm_confdir, anthropic_upstream="http://127.0.0.1:9", db_url=url
    )
    try:
        deadline = time.monotonic() + 30
        while "Ctrl-C stops it" not in proxy.log.read_text():
            assert time.monotonic() < deadline, proxy.log.read_text()
            time.sleep(0.05)
    finally:
        assert proxy.stop() == 0, proxy.log.read_text()
    log = proxy.log.read_text()
    assert "secret" not in log
    assert "tracetap is recording into postgresql+psycopg://postgres:***@127.0.0.1:" in log


def _tracetap(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACETAP_")}
    return subprocess.run(
        [sys.executable, "-m", "tracetap", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("command", [["db", "check"], ["sessions"]], ids=" ".join)
def test_an_unreachable_store_is_one_line_without_the_password(command: list[str]) -> None:
    done = _tracetap(*command, "--db", SECRET_URL)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "secret" not in output
    [line] = output.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: cannot open postgresql://u:***@127.0.0.1:9/x: "), output


# -- the admin endpoints stay on loopback ------------------------------------------------------


def _with_admin(tmp_path: Path, confdir: Path, *args: str) -> tuple[RunningProxy, int]:
    admin = free_port()
    proxy = start_proxy(
        tmp_path,
        confdir=confdir,
        anthropic_upstream="http://127.0.0.1:9",
        extra_args=["--admin-port", str(admin), *args],
    )
    deadline = time.monotonic() + 30
    while not listening_addresses(admin):
        assert proxy.proc.poll() is None, proxy.log.read_text()
        assert time.monotonic() < deadline, proxy.log.read_text()
        time.sleep(0.05)
    return proxy, admin


def test_admin_stays_on_loopback_when_the_proxy_listens_everywhere(
    tmp_path: Path, mitm_confdir: Path
) -> None:
    proxy, admin = _with_admin(tmp_path / "p", mitm_confdir, "--listen-host", "0.0.0.0")
    try:
        assert listening_addresses(proxy.anthropic_port or 0) & {"0.0.0.0", "::"}
        assert listening_addresses(admin) == {"127.0.0.1"}
        assert httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=10).status_code == 200
        outside = outside_address()
        if outside is not None:  # and another machine cannot reach it
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{outside}:{admin}/healthz", timeout=5)
    finally:
        assert proxy.stop() == 0, proxy.log.read_text()
    assert f"Admin: http://127.0.0.1:{admin}/healthz" in proxy.log.read_text()


def test_admin_listens_on_the_address_given(tmp_path: Path, mitm_confdir: Path) -> None:
    proxy, admin = _with_admin(tmp_path / "p", mitm_confdir, "--admin-host", "127.0.0.2")
    try:
        assert listening_addresses(admin) == {"127.0.0.2"}
        assert httpx.get(f"http://127.0.0.2:{admin}/healthz", timeout=10).status_code == 200
    finally:
        assert proxy.stop() == 0, proxy.log.read_text()
    assert f"Admin: http://127.0.0.2:{admin}/healthz" in proxy.log.read_text()
    everywhere, admin = _with_admin(tmp_path / "q", mitm_confdir, "--admin-host", "0.0.0.0")
    try:
        assert listening_addresses(admin) == {"0.0.0.0"}
        outside = outside_address()
        if outside is not None:
            assert httpx.get(f"http://{outside}:{admin}/healthz", timeout=10).status_code == 200
    finally:
        assert everywhere.stop() == 0, everywhere.log.read_text()
