"""kill -9 of the proxy process itself mid-burst: every request a client saw complete before the
kill must be in the spool, so that a new proxy on the same store and journal directory stores it.

The addon holds the end of each response until its exchange is fsynced in the spool (a whole
JSON body is kept until then, an SSE stream's terminating chunk waits for it). Here the spool's
fsync is made to take FSYNC_DELAY seconds longer (a busy disk), so a kill lands between a
response's last byte from upstream and its fsync in every run; TT_KILL_FSYNC_DELAY=0 runs it
at the disk's own speed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.reliability.traffic import (
    Burst,
    alive,
    fault_env,
    ingest_pid,
    stop_in_time,
    stored_rounds,
)
from tests.support.proxy import start_proxy
from tests.support.scripted import ScriptedUpstream

# seconds added to each fsync of the spool in the proxy
FSYNC_DELAY = float(os.environ.get("TT_KILL_FSYNC_DELAY", "0.1"))


def test_kill_9_of_the_proxy_mid_burst_then_restart_loses_nothing(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, mitm_confdir: Path
) -> None:
    journal = tmp_path / "journal"
    env = fault_env(tmp_path, journal / "spool", fsync_delay=FSYNC_DELAY) if FSYNC_DELAY else {}
    proxy = start_proxy(
        tmp_path,
        confdir=mitm_confdir,
        anthropic_upstream=scripted_upstream.url,
        journal_dir=journal,
        env=env,
    )
    child = ingest_pid(proxy)
    assert child is not None
    burst = Burst(proxy.anthropic_url, threads=4, tag="kill").start()
    burst.wait_done(30)
    killed_at = time.monotonic()
    os.kill(proxy.proc.pid, signal.SIGKILL)  # no flush, no goodbye
    proxy.proc.wait(10)
    burst.stop()
    # A response the proxy had written to its socket before it died may still complete at its
    # client afterwards: it counts as completed too.
    completed = burst.completed()
    assert burst.failed  # the ones in flight at the kill
    # The orphaned ingest process sees its parent gone, takes what the spool holds and exits.
    deadline = time.monotonic() + 60
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the orphaned ingest process did not exit"
    again = start_proxy(
        tmp_path / "again",
        confdir=mitm_confdir,
        anthropic_upstream=scripted_upstream.url,
        db_url=proxy.db_url,
        journal_dir=journal,
    )
    stop_in_time(again)
    stored = stored_rounds(proxy.db_url)
    assert len(stored) == len(set(stored))  # nothing stored twice
    # what was in flight at the kill may or may not be stored
    assert len(stored) <= len(completed) + len(burst.failed)
    missing = sorted(set(completed) - set(stored))
    ages = {
        f"{i} ({'sse' if i in burst.streamed else 'json'})": round(
            (killed_at - burst.done_at[i]) * 1000, 1
        )
        for i in missing
    }
    assert not missing, (
        f"{len(missing)} of {len(completed)} completed requests not stored; ms from their end "
        f"at the client to the kill (negative: after it): {ages}; {len(burst.failed)} in flight"
    )
