"""The journal directory's disk full while traffic flows: the streams pass through, /healthz says
the disk is full, and once there is room again every request that completed is stored.

Two ways to fill it: a real one (the journal directory on a small tmpfs this test mounts, filled
by a ballast file; needs mount(2), so root) and an injected one that needs nothing (fsync raises
ENOSPC in the proxy and its ingest process while a flag file exists: `traffic.fault_env`)."""

from __future__ import annotations

import ctypes
import errno
import os
import time
from pathlib import Path

import pytest

from tests.reliability.traffic import Burst, Health, fault_env, stop_in_time, stored_rounds
from tests.support.proxy import RunningProxy, start_proxy
from tests.support.scripted import ScriptedUpstream

FULL_FOR = 10.0  # seconds the disk stays full while traffic flows
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _mount_tmpfs(where: Path, size: str) -> None:
    """mount -t tmpfs -o size=SIZE; skips the test when this process may not mount."""
    where.mkdir(parents=True, exist_ok=True)
    rc = _libc.mount(b"tmpfs", os.fsencode(where), b"tmpfs", 0, f"size={size},mode=0700".encode())
    if rc != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            pytest.skip(
                "mount(2) of a tmpfs is not permitted here (EPERM: not root, or no "
                "CAP_SYS_ADMIN); test_fsync_enospc_injected_loses_nothing covers a full disk "
                "without a mount"
            )
        raise OSError(err, f"mount tmpfs on {where}: {os.strerror(err)}")


def _umount(where: Path) -> None:
    if _libc.umount2(os.fsencode(where), 0) != 0:
        _libc.umount2(os.fsencode(where), MNT_DETACH)  # still busy: detach it


def _fill(ballast: Path) -> int:
    """Write the ballast until the disk is full; its size."""
    chunk = b"\0" * 65536
    written = 0
    with open(ballast, "wb", buffering=0) as fh:
        while True:
            try:
                written += fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        for size in (4096, 512, 1):  # the last pages too: nothing left for anyone
            try:
                while True:
                    written += fh.write(chunk[:size])
            except OSError:
                pass
    return written


def _disk_said(health: Health, start: float, end: float) -> list[tuple[int, object, object]]:
    """What /healthz answered in [start, end] when it named the full disk (503 or degraded)."""
    return [
        (code, body.get("status"), body.get("reason"))
        for at, code, body in health.seen
        if start <= at <= end
        and (code == 503 or body.get("status") == "degraded")
        and "No space left on device" in str(body.get("reason"))
    ]


def _run_full_disk(
    proxy: RunningProxy, fill: object, empty: object, *, recovered_within: float = 40.0
) -> None:
    """Traffic, `fill()` for FULL_FOR seconds, `empty()`; then checks health and the store."""
    health = Health(proxy, every=0.2).start()
    burst = Burst(proxy.anthropic_url, threads=4, pause=0.02, tag="disk").start()
    try:
        burst.wait_done(10)
        full_at = time.monotonic()
        fill()  # type: ignore[operator]
        before = len(burst.done)
        time.sleep(FULL_FOR)
        during = len(burst.done) - before
        emptied_at = time.monotonic()
        empty()  # type: ignore[operator]
        # recording works again: /healthz says "ok" (the ingest process may be in its
        # restart back-off), while traffic still flows
        deadline = time.monotonic() + recovered_within
        while time.monotonic() < deadline:
            if health.seen and health.seen[-1][0] > emptied_at and health.seen[-1][1] == 200:
                if health.seen[-1][2].get("status") == "ok":
                    break
            time.sleep(0.2)
        recovered = time.monotonic() - emptied_at
    finally:
        burst.stop()
        health.stop()
    said = _disk_said(health, full_at, emptied_at + 1.0)
    assert said, f"/healthz never named the full disk: {health.summary()}"
    assert health.seen[-1][1] == 200 and health.seen[-1][2].get("status") == "ok", (
        f"not recovered {recovered:.1f} s after the disk had room: {health.seen[-1]}"
    )
    assert not burst.failed, burst.failed[:3]  # the pass-through never failed
    took = stop_in_time(proxy)
    completed = burst.completed()
    stored = stored_rounds(proxy.db_url)
    slowest = max(t for i, t in burst.took.items() if full_at <= burst.done_at[i] <= emptied_at)
    print(
        f"completed {len(completed)} ({during} while full, the slowest in {slowest:.2f} s), "
        f"stored {len(stored)}, recovered {recovered:.1f} s after, stopped in {took:.1f} s; "
        f"/healthz: {dict(health.summary())}"
    )
    missing = sorted(set(completed) - set(stored))
    assert stored == completed, (
        f"{len(completed)} completed, {len(stored)} stored; missing {missing[:10]}; "
        f"/healthz: {health.summary()}"
    )
    # the streams keep their pace: a disk that cannot take the exchanges does not hold them up
    assert during > 20 and slowest < 2.0, (
        f"only {during} requests completed in the {FULL_FOR:.0f} s the disk was full "
        f"(4 clients), the slowest in {slowest:.2f} s"
    )


def test_journal_disk_full_then_room_again_loses_nothing(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, mitm_confdir: Path
) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "32m")
    try:
        proxy = start_proxy(
            tmp_path,
            confdir=mitm_confdir,
            anthropic_upstream=scripted_upstream.url,
            admin=True,
            journal_dir=disk / "journal",
        )
        ballast = disk / "ballast"
        try:
            _run_full_disk(proxy, lambda: _fill(ballast), ballast.unlink)
        finally:
            proxy.stop()
    finally:
        _umount(disk)


def test_fsync_enospc_injected_loses_nothing(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, mitm_confdir: Path
) -> None:
    """No mount needed: the proxy's spool and the ingest process's journal get ENOSPC from
    fsync for FULL_FOR seconds."""
    flag = tmp_path / "disk-full"
    journal = tmp_path / "journal"
    proxy = start_proxy(
        tmp_path,
        confdir=mitm_confdir,
        anthropic_upstream=scripted_upstream.url,
        admin=True,
        journal_dir=journal,
        env=fault_env(tmp_path, journal, enospc_flag=flag),
    )
    try:
        _run_full_disk(proxy, flag.touch, flag.unlink)
    finally:
        proxy.stop()
