"""The database unavailable for a while as traffic flows (SQLite locked by another connection;
PostgreSQL stopped): the streams pass through, records wait in the journal, and once the
database is back every request that completed is stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.traffic import Burst, Health, stop_in_time, stored_rounds
from tests.support.postgres import PostgresServer
from tests.support.proxy import RunningProxy, start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage.db import make_engine

OUTAGE = 30.0  # seconds: longer than SQLite's busy timeout, so writes fail and are retried


def _through_outage(
    proxy: RunningProxy, begin: Callable[[], None], end: Callable[[], None]
) -> dict[str, int]:
    """Traffic before, during and after the outage; checks the store. /healthz's answers."""
    health = Health(proxy, every=0.25).start()
    burst = Burst(proxy.anthropic_url, threads=4, pause=0.02, tag="db").start()
    try:
        burst.wait_done(10)
        begin()
        try:
            before = len(burst.done)
            time.sleep(OUTAGE)
            during = len(burst.done) - before
        finally:
            end()
        burst.wait_done(len(burst.done) + 10)  # and after
    finally:
        burst.stop()
        health.stop()
    assert not burst.failed, burst.failed[:3]  # the pass-through never failed
    assert during > 20, f"only {during} requests completed during the outage"
    took = stop_in_time(proxy)
    completed = burst.completed()
    stored = stored_rounds(proxy.db_url)
    missing = sorted(set(completed) - set(stored))
    said = {
        f"{code} {status}: {reason}": n for (code, status, reason), n in health.summary().items()
    }
    print(
        f"completed {len(completed)} ({during} during the outage), stored {len(stored)}, "
        f"stopped in {took:.1f} s; /healthz: {said}"
    )
    assert stored == completed, (
        f"{len(completed)} completed, {len(stored)} stored; missing {missing[:10]}; {said}"
    )
    backlog = max(int(body.get("journal_backlog_bytes") or 0) for _, _, body in health.seen)
    assert backlog > 0, "nothing ever waited in the journal: was the database out?"
    return said


@pytest.mark.slow
def test_sqlite_locked_for_30_seconds_loses_nothing(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, mitm_confdir: Path
) -> None:
    proxy = start_proxy(
        tmp_path, confdir=mitm_confdir, anthropic_upstream=scripted_upstream.url, admin=True
    )
    engine = make_engine(proxy.db_url)
    conn = engine.connect()
    counts = []
    try:

        def lock() -> None:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")  # the writer cannot commit
            counts.append(len(stored_rounds(proxy.db_url)))  # WAL: others still read

        def unlock() -> None:
            counts.append(len(stored_rounds(proxy.db_url)))
            conn.exec_driver_sql("ROLLBACK")

        _through_outage(proxy, lock, unlock)
        assert counts[0] == counts[1], counts  # nothing was committed while it was locked
    finally:
        conn.close()
        engine.dispose()
        proxy.stop()


@pytest.mark.slow
def test_postgresql_stopped_for_30_seconds_loses_nothing(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, mitm_confdir: Path
) -> None:
    server = PostgresServer()  # its own: stopping the session's server would disturb others
    try:
        proxy = start_proxy(
            tmp_path,
            confdir=mitm_confdir,
            anthropic_upstream=scripted_upstream.url,
            admin=True,
            db_url=server.url,
        )
        try:
            said = _through_outage(proxy, server.stop, server.start)
        finally:
            proxy.stop()
        assert any(s.startswith("200 degraded") for s in said), said  # it said so meanwhile
    finally:
        server.close()
