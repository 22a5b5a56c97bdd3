"""Faults on the ingest side of a real `tracetap proxy`: every request that completed is stored,
whatever happens to the ingest process, and the proxy stops within a bounded time."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import anthropic
import httpx
import pytest
import sqlalchemy as sa

from tests.support.proxy import RunningProxy, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage import models as m
from tracetap.storage.db import make_engine

TOOLS = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


def _ingest_pid(proxy: RunningProxy) -> int:
    """The spawned ingest process (not multiprocessing's resource tracker)."""
    for pid in _children(proxy.proc.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            return pid
    raise AssertionError("no ingest process")


def _ask(url: str, i: int, **extra: object) -> str:
    client = anthropic.Anthropic(base_url=url, api_key="sk-ant-api03-fault", max_retries=0)
    msg = client.messages.create(
        model="claude-fault",
        max_tokens=20,
        tools=TOOLS,
        messages=[{"role": "user", "content": f"task {i}"}],
        extra_headers={"X-Claude-Code-Session-Id": f"fault-{i % 7}"},
        **extra,  # type: ignore[arg-type]
    )
    return msg.id


def _stored(url: str) -> tuple[set[str], set[str]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rounds = set(conn.execute(sa.select(m.Round.response_id)).scalars())
        sides = set(conn.execute(sa.select(m.SideRequest.kind)).scalars())
    engine.dispose()
    return rounds, sides


def _stop_in_time(proxy: RunningProxy, limit: float = 90.0) -> float:
    started = time.monotonic()
    proxy.stop(signal.SIGTERM, timeout=limit)
    took = time.monotonic() - started
    assert took < limit
    return took


@pytest.mark.slow
def test_kill_9_of_the_ingest_process_mid_burst_loses_nothing(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, mitm_confdir: Path
) -> None:
    proxy = start_proxy(
        tmp_path, confdir=mitm_confdir, anthropic_upstream=scripted_upstream.url, admin=True
    )
    done: list[str] = []
    lock = threading.Lock()

    def burst(worker: int) -> None:
        for i in range(worker, 120, 4):
            msg_id = _ask(proxy.anthropic_url, i)
            with lock:
                done.append(msg_id)

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    while len(done) < 30:
        time.sleep(0.01)
    victim = _ingest_pid(proxy)
    import os

    os.kill(victim, signal.SIGKILL)
    health = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the proxy says so, and keeps recording
        health = httpx.get(f"http://127.0.0.1:{proxy.admin_port}/healthz", timeout=5).json()
        if health["reason"] and "ingest process" in health["reason"]:
            break
        time.sleep(0.05)
    assert health is not None and health["status"] == "degraded", health
    for t in threads:
        t.join()
    deadline = time.monotonic() + 60  # restarted, and resumed from the spool
    while time.monotonic() < deadline and _ingest_pid(proxy) == victim:
        time.sleep(0.1)
    assert _ingest_pid(proxy) != victim
    _stop_in_time(proxy)
    rounds, _ = _stored(proxy.db_url)
    assert len(done) == 120
    assert rounds == set(done)


@pytest.mark.slow
def test_sigterm_stops_within_bounds_when_the_ingest_process_is_gone(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, mitm_confdir: Path
) -> None:
    proxy = start_proxy(tmp_path, confdir=mitm_confdir, anthropic_upstream=scripted_upstream.url)
    ids = [_ask(proxy.anthropic_url, i) for i in range(3)]
    import os

    os.kill(_ingest_pid(proxy), signal.SIGKILL)
    ids += [_ask(proxy.anthropic_url, i) for i in range(3, 6)]  # while it is dead
    _stop_in_time(proxy)
    rounds, _ = _stored(proxy.db_url)
    assert rounds == set(ids)


def _nested(depth: int) -> object:
    value: object = "deep"
    for _ in range(depth):
        value = [value]
    return value


def test_a_request_nested_past_recursion_limits_stops_nothing(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, mitm_confdir: Path
) -> None:
    """A 2 kB request nested 1,100 levels deep passes through; it is kept as a side request
    of its facts, and every round after it is stored."""
    proxy = start_proxy(tmp_path, confdir=mitm_confdir, anthropic_upstream=scripted_upstream.url)
    deep = {
        "model": "claude-fault",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "deep"}],
        "metadata": {"nest": _nested(1100)},
    }
    body = json.dumps(deep).encode()
    answer = httpx.post(
        f"{proxy.anthropic_url}/v1/messages",
        content=body,
        headers={"content-type": "application/json", "x-api-key": "sk-ant-api03-fault"},
        timeout=30,
    )
    assert answer.status_code == 200
    after = [_ask(proxy.anthropic_url, i) for i in range(3)]
    _stop_in_time(proxy)
    rounds, sides = _stored(proxy.db_url)
    assert set(after) <= rounds
    assert len(rounds) + len(sides) == 4  # the deep one is stored too, as a round or its facts
