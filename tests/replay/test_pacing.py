"""Replay's waits: never before the deadline and promptly after it, with the timerfd and without,
on asyncio's loop (and uvloop's); eager starts; cancellation; the collector settings restored."""

from __future__ import annotations

import asyncio
import gc
import random

import pytest

from tracetap.replay import pacing
from tracetap.replay.pacing import Pacer, loop_factory, now, steady_gc

LOOPS = ["asyncio"] + (["uvloop"] if loop_factory() is not None else [])


def _run(coro, loop: str):  # type: ignore[no-untyped-def]
    return asyncio.run(coro, loop_factory=loop_factory() if loop == "uvloop" else None)


async def _lateness(n: int = 200) -> list[float]:
    """n concurrent waiters on random deadlines over 0.3 s; each one's lateness in ms."""
    pacer = Pacer(asyncio.get_running_loop())
    rng = random.Random(1)
    t0 = now() + 0.02
    late: list[float] = []

    async def one(deadline: float) -> None:
        await pacer.sleep_until(deadline)
        late.append((now() - deadline) * 1000)

    try:
        await asyncio.gather(*(one(t0 + rng.uniform(0, 0.3)) for _ in range(n)))
    finally:
        pacer.close()
    return late


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("timerfd", [True, False])
def test_waits_end_at_the_deadline_never_before(
    loop: str, timerfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if timerfd and not Pacer.available():
        pytest.skip("no timerfd here")
    if not timerfd:  # asyncio.sleep fallback: uvloop's timers fire up to 1 ms early
        monkeypatch.setattr(pacing, "_LIBC", None)
    late = _run(_lateness(), loop)
    assert len(late) == 200 and min(late) >= 0
    assert sorted(late)[100] < 5  # median; generous: the machine is shared


@pytest.mark.parametrize("loop", LOOPS)
def test_cancelled_and_past_deadlines(loop: str) -> None:
    async def go():  # type: ignore[no-untyped-def]
        pacer = Pacer(asyncio.get_running_loop())
        try:
            t = now()
            await pacer.sleep_until(t - 1)  # already due: returns at once
            early = asyncio.ensure_future(pacer.sleep_until(now() + 0.02))
            later = asyncio.ensure_future(pacer.sleep_until(now() + 0.05))
            await asyncio.sleep(0)
            early.cancel()  # the timer stays armed for it; the later waiter still wakes
            await later
            late = now() - t
            dangling = asyncio.ensure_future(pacer.sleep_until(now() + 60))
            await asyncio.sleep(0)
        finally:
            pacer.close()
        with pytest.raises(asyncio.CancelledError):
            await dangling  # close() cancels waiters still asleep
        return early.cancelled(), late

    cancelled, late = _run(go(), loop)
    assert cancelled and 0.05 <= late < 0.5


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("timerfd", [True, False])
def test_start_at_runs_eagerly_and_passes_results_on(
    loop: str, timerfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if timerfd and not Pacer.available():
        pytest.skip("no timerfd here")
    if not timerfd:
        monkeypatch.setattr(pacing, "_LIBC", None)
    log: list[str] = []

    async def job(name: str, fail: bool = False, wait: float = 0.01) -> str:
        log.append(f"{name} started")  # eager: before anything else the loop had queued
        await asyncio.sleep(wait)
        if fail:
            raise ValueError(name)
        log.append(f"{name} done")
        return name

    async def go():  # type: ignore[no-untyped-def]
        pacer = Pacer(asyncio.get_running_loop())
        try:
            due = pacer.start_at(now() - 1, lambda: job("due"))
            assert log == ["due started"]  # already due: started in the caller
            t = now() + 0.03
            ok = pacer.start_at(t, lambda: job("ok"))
            bad = pacer.start_at(t, lambda: job("bad", fail=True))
            never = pacer.start_at(t, lambda: job("never"))
            never.cancel()
            slow = pacer.start_at(t + 0.01, lambda: job("slow", wait=0.5))
            await pacer.sleep_until(t)  # woken by the same timer, after the two starts
            i = log.index("ok started")
            assert log[i:] == ["ok started", "bad started"]
            with pytest.raises(ValueError, match="bad"):
                await bad
            await asyncio.sleep(0.015)  # slow has started and is inside its sleep
            slow.cancel()
            await asyncio.sleep(0.02)
            late = pacer.start_at(now() + 60, lambda: job("late"))
        finally:
            pacer.close()
        with pytest.raises(asyncio.CancelledError):
            await late  # close() cancels what has not started
        assert await due == "due"
        return await ok, now() - t

    result, elapsed = _run(go(), loop)
    assert result == "ok" and elapsed < 1
    assert "never started" not in log and "late started" not in log
    assert "slow started" in log and "slow done" not in log  # cancelled while running


def test_steady_gc_freezes_and_restores() -> None:
    before = gc.get_threshold()
    with steady_gc(young=123_456):
        assert gc.get_threshold()[0] == 123_456
        assert gc.get_freeze_count() > 1000  # the test process's modules, at least
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
