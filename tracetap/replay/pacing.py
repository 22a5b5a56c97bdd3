"""Replay's timing: sends started at absolute deadlines by one Linux timerfd (ns resolution;
asyncio's selector rounds each timeout up to whole ms, twice), a quiet collector, uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import heapq
import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

__all__ = ["Pacer", "loop_factory", "now", "steady_gc"]

# The clock of every deadline and measurement: CLOCK_MONOTONIC, read directly (an event loop's
# time() may be coarser: uvloop's is libuv's cached millisecond clock).
now = time.monotonic

_CLOCK_MONOTONIC, _TFD_TIMER_ABSTIME = 1, 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


class Pacer:
    """Runs callbacks at absolute `now()` deadlines, never before. Callbacks wait in one heap; a
    timerfd armed to the earliest deadline (absolute, CLOCK_MONOTONIC) wakes the loop and its
    reader runs every callback that is due, in deadline order. Without timerfd (not Linux) one
    loop timer is armed instead and re-armed when it fires early (uvloop's can, by up to 1 ms)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # (deadline, tie-break, callback, the future close() cancels if it has not run)
        self._heap: list[tuple[float, int, Callable[[], object], asyncio.Future[Any] | None]] = []
        self._seq = itertools.count()
        self._armed = math.inf
        self._spec = _Itimerspec()
        self._handle: asyncio.TimerHandle | None = None
        self._fd = -1
        if _LIBC is not None:
            fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                loop.add_reader(fd, self._fire)

    @staticmethod
    def available() -> bool:
        """True where deadlines are timed by a timerfd (Linux)."""
        return _LIBC is not None

    def call_at(
        self,
        deadline: float,
        callback: Callable[[], object],
        owner: asyncio.Future[Any] | None = None,
    ) -> None:
        """Run `callback()` inside the timer's callback once `deadline` has passed; close()
        before then cancels `owner`."""
        heapq.heappush(self._heap, (deadline, next(self._seq), callback, owner))
        if deadline < self._armed:
            self._arm(deadline)

    async def sleep_until(self, deadline: float) -> None:
        """Return at `deadline` or just after (at once if it has passed)."""
        if deadline <= now():
            return
        fut = self.loop.create_future()
        self.call_at(deadline, functools.partial(_wake, fut), fut)
        await fut

    def start_at[T](
        self, deadline: float, make: Callable[[], Coroutine[Any, Any, T]]
    ) -> asyncio.Future[T]:
        """Start `make()` at `deadline` as an eager task: it runs inside the timer's callback up
        to its first real wait, before the loop turns to anything else (for a request: until it
        is written to its connection); at once, in the caller, if `deadline` has passed. Returns
        a future of its result; cancelling that future cancels the task (or keeps it from
        starting)."""
        out: asyncio.Future[T] = self.loop.create_future()

        def start() -> None:
            if out.done():  # cancelled before its time
                return
            task = asyncio.Task(make(), loop=self.loop, eager_start=True)
            task.add_done_callback(functools.partial(_copy, out))
            out.add_done_callback(lambda o: task.cancel() if o.cancelled() else None)

        if deadline <= now():
            start()
        else:
            self.call_at(deadline, start, out)
        return out

    def _arm(self, deadline: float) -> None:
        self._armed = deadline
        if self._fd < 0 or _LIBC is None:  # no timerfd (the fd is only made with libc)
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self.loop.call_later(max(0.0, deadline - now()), self._fire)
            return
        sec = int(deadline)
        nsec = math.ceil((deadline - sec) * 1e9)  # never before the deadline
        if nsec >= 1_000_000_000:
            sec, nsec = sec + 1, nsec - 1_000_000_000
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = sec, max(nsec, 1)
        if _LIBC.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, self._spec, None) < 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def poll(self) -> None:
        """Run what is due now. Called between pieces of other work (each chunk of a response
        read), it starts due sends without waiting for the loop to finish its current batch of
        callbacks; the timer, still armed, then finds nothing or less to do."""
        heap = self._heap
        if heap and heap[0][0] <= now():
            while heap and heap[0][0] <= now():
                heapq.heappop(heap)[2]()

    def _fire(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(BlockingIOError):
                os.read(self._fd, 8)
        self._handle, self._armed = None, math.inf
        heap = self._heap
        while heap and heap[0][0] <= now():  # also what fell due while earlier ones ran
            heapq.heappop(heap)[2]()
        if heap:
            self._arm(heap[0][0])

    def close(self) -> None:
        """Stop the timer: callbacks not yet run never will, and their owners are cancelled."""
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._handle is not None:
            self._handle.cancel()
        for *_, owner in self._heap:
            if owner is not None:
                owner.cancel()
        self._heap.clear()
        self._armed = math.inf


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():  # a cancelled sleeper leaves its callback behind
        fut.set_result(None)


def _copy[T](out: asyncio.Future[T], task: asyncio.Task[T]) -> None:
    if out.done():
        return
    if task.cancelled():
        out.cancel()
    elif (exc := task.exception()) is not None:
        out.set_exception(exc)
    else:
        out.set_result(task.result())


@contextlib.contextmanager
def steady_gc(young: int = 100_000) -> Iterator[None]:
    """Next to no collector pauses while replaying. Everything alive at the start (code, plan)
    is frozen out of collection, and a young collection waits for `young` more container objects
    than were freed instead of 700: in-flight requests come and go and results are kept as bytes,
    so a replay seldom gets there (at 700, collections paused the loop many times a second).
    The thresholds are restored and frozen objects unfrozen (all of them) on exit."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(young, thresholds[0]), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (a dependency except on Windows), else None
    (asyncio's): for `asyncio.run(..., loop_factory=...)`. On this workload its transports cost
    less than asyncio's, which shows when the cores are contended."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
