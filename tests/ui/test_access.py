"""Who may open `tracetap ui` and what it may touch: loopback unless a token is given, the token
on every request, a store it never writes, one-line errors."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.storage.rounds import claude_session
from tests.support.proxy import free_port, start_proxy
from tests.ui.seed import write
from tracetap.storage import models as m
from tracetap.storage.db import make_engine
from tracetap.ui.app import read_only

TOKEN = "s3cret-ui-token"


def _tracetap(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACETAP_")}
    return subprocess.run(
        [sys.executable, "-m", "tracetap", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    output = (done.stdout + done.stderr).strip()
    assert len(output.splitlines()) == 1, output  # no traceback
    return output


def test_a_non_loopback_host_without_a_token_is_refused(store: str) -> None:
    done = _tracetap("ui", "--db", store, "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2
    line = _one_line(done)
    assert line.startswith("error: --host 0.0.0.0") and "--token" in line


def test_with_a_token_every_request_needs_it(store: str, ui: Any, page: Any) -> None:
    running = ui(store, "--token", TOKEN, host="0.0.0.0")
    for path in ("/", "/api/sessions", "/api/events", "/static/plotly.min.js", "/session/x"):
        assert httpx.get(running.url + path).status_code == 401, path
    assert httpx.get(running.url + "/api/sessions", params={"token": "wrong"}).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(running.url + "/api/sessions", headers=bearer).status_code == 200
    header = {"X-Tracetap-Token": TOKEN}
    assert len(httpx.get(running.url + "/api/sessions", headers=header).json()["sessions"]) == 4
    # a browser opens the link with ?token= once; the cookie it gets carries the rest
    page.goto(f"{running.url}/?token={TOKEN}")
    page.wait_for_selector("tr.session-row")
    page.wait_for_selector("#status.live")  # the event stream got through with the cookie
    page.goto(running.url + "/session/claude:sess-ui-1")
    page.wait_for_selector(".wf-bar")


def test_unknown_sessions_and_rounds_are_404s_with_the_reason(store: str, ui: Any) -> None:
    running = ui(store)
    missing = httpx.get(running.url + "/api/session/claude:nope")
    assert missing.status_code == 404 and "no session matches" in missing.json()["error"]
    several = httpx.get(running.url + "/api/session/claude:")  # every claude session
    assert several.status_code == 404 and "several sessions" in several.json()["error"]
    assert httpx.get(running.url + "/api/round/999999").status_code == 404
    bad = httpx.get(running.url + "/api/sessions", params={"agent": "gemini"})
    assert bad.status_code == 400 and "unknown agent 'gemini'" in bad.json()["error"]


def test_the_ui_does_not_write_to_the_store(store: str, ui: Any, page: Any) -> None:
    path = Path(make_engine(store, create=False).url.database or "")
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    running = ui(store)
    page.goto(running.url + "/")
    page.wait_for_selector("tr.session-row")
    page.goto(running.url + "/session/claude:rewrite-1")
    page.wait_for_selector(".wf-bar")
    page.click(".wf-bar >> nth=3")
    page.wait_for_selector("#content h3")
    page.goto(running.url + "/analysis")
    page.wait_for_selector(".figure .main-svg", timeout=60_000)
    assert running.stop() in (0, -15)
    after = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    assert after == before


def test_ctrl_c_stops_it_at_once_with_a_live_page_open(store: str, ui: Any, page: Any) -> None:
    running = ui(store)
    page.goto(running.url + "/")
    page.wait_for_selector("#status.live")  # the event stream is open
    started = time.monotonic()
    running.proc.send_signal(signal.SIGINT)
    assert running.proc.wait(10) == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in running.log.read_text()


def test_its_engine_refuses_writes(store: str) -> None:
    engine = read_only(make_engine(store, create=False))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA query_only").scalar() == 1
    with pytest.raises(sa.exc.OperationalError, match="readonly"):
        with engine.begin() as conn:
            conn.execute(sa.delete(m.Round))
    engine.dispose()


def test_rounds_stored_in_full_are_shown_redacted_unless_asked(
    store: str, ui: Any, tmp_path: Path
) -> None:
    secret = "ghp_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6"
    key = tmp_path / "ui-pseudonym.key"  # the key the UI is started with (conftest)
    prompt = f"deploy with {secret}"
    write(store, claude_session(2, session="full-1", first_prompt=prompt), key, content="full")
    write(store, claude_session(2, session="red-1", first_prompt=prompt), key)

    def first_message(running: Any, ref: str) -> dict[str, Any]:
        detail = httpx.get(f"{running.url}/api/session/{ref}").json()
        answer = httpx.get(f"{running.url}/api/round/{detail['rounds'][1]['pk']}").json()
        return {"text": answer["sections"]["messages"][0]["text"], **answer}

    for args, shown in (((), False), (("--content", "full"), True)):
        running = ui(store, *args)
        full = first_message(running, "claude:full-1")
        assert full["content_policy"] == "full"
        assert full["shown_as"] == ("full" if shown else "redacted")
        assert (secret in full["text"]) is shown
        assert ("<secret:" in full["text"]) is not shown
        if not shown:  # scrubbed with the recording key: as the proxy would have stored it
            assert full["text"] == first_message(running, "claude:red-1")["text"]
        running.stop()


def test_a_missing_store_and_a_busy_port_are_one_line(tmp_path: Path, store: str) -> None:
    missing = _tracetap("ui", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 2
    assert "no such SQLite store" in _one_line(missing)
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "empty.db").touch()  # a SQLite file without tracetap's schema
    empty = _tracetap("ui", "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert empty.returncode == 1
    assert "no recordings yet" in _one_line(empty)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = _tracetap("ui", "--db", store, "--port", str(port))
    assert taken.returncode == 2
    assert _one_line(taken).startswith(f"error: cannot listen on 127.0.0.1:{port}")


def test_the_proxy_serves_the_ui_beside_it(tmp_path: Path, mitm_confdir: Path) -> None:
    port = free_port()
    proxy = start_proxy(
        tmp_path,
        confdir=mitm_confdir,
        anthropic_upstream="http://127.0.0.1:9",
        extra_args=["--ui-port", str(port)],
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(url + "/api/sessions", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, proxy.log.read_text()
                time.sleep(0.05)
        assert answer.status_code == 200 and answer.json()["sessions"] == []
        assert f"Web UI: {url}/" in proxy.log.read_text()
    finally:
        assert proxy.stop() == 0, proxy.log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/api/latest", timeout=2)  # it ends with the proxy


@pytest.mark.slow
def test_on_postgresql_it_reads_and_refuses_writes(pg_url: str, tmp_path: Path, ui: Any) -> None:
    from tests.storage.rounds import claude_session
    from tests.ui.seed import write

    write(pg_url, claude_session(3, session="pg-1"), tmp_path / "key")
    engine = read_only(make_engine(pg_url, create=False))
    with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
        with engine.begin() as conn:
            conn.execute(sa.delete(m.Round))
    engine.dispose()
    running = ui(pg_url)
    rows = httpx.get(running.url + "/api/sessions").json()["sessions"]
    assert [(r["ref"], r["rounds"]) for r in rows] == [("claude:pg-1", 3)]
    detail = httpx.get(running.url + "/api/session/claude:pg-1").json()
    content = httpx.get(f"{running.url}/api/round/{detail['rounds'][2]['pk']}").json()
    assert [e["status"] for e in content["sections"]["messages"]][-2:] == ["new", "new"]
