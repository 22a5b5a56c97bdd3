"""Normalization spread over worker processes, each owning the sessions of one shard, so parsing,
tokenizing and scrubbing use every core; a batch's records come back in submission order.

A session is recognised by the agents' own session headers (Claude Code, Codex), so all its
rounds reach the worker that holds its state (the least busy one when the session first came);
exchanges without one go to the first worker.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from tracetap.allocator import collect_less, keep_freed_memory
from tracetap.ingest.normalize import Normalizer, Transform, session_hint
from tracetap.ingest.records import Failed, Record
from tracetap.model import Exchange
from tracetap.privacy.files import private_files

__all__ = ["NormalizerPool", "SessionRouter", "defer_global"]

log = logging.getLogger("tracetap.ingest")

_POLL = 1.0  # seconds between liveness checks while a batch is out
STUCK_AFTER = 300.0  # a live worker silent this long on a batch is killed (its work done here)


class SessionRouter:
    """The worker for each exchange. A session's exchanges all go to one worker: the one that
    had the least work lately when the session first came (a hash of the session's id would
    put two busy sessions on one worker half the time, the other idle). Exchanges without a
    session header go to the first worker. Remembers the last `remember` sessions; one
    forgotten and seen again may go to another worker, which starts its state afresh."""

    def __init__(self, n: int, *, remember: int = 65_536, half_life: int = 4096) -> None:
        self.n = n
        self._of: OrderedDict[str, int] = OrderedDict()  # session id -> worker
        self._remember = remember
        self._load = [0.0] * n  # exchanges sent to each worker, halved every `half_life`
        self._half_life = half_life
        self._sent = 0

    def __call__(self, item: Any, avoid: set[int] | frozenset[int] = frozenset()) -> int:
        """The worker for `item`; a new session is given none of `avoid` (dead workers)
        while another is left."""
        hint = session_hint(item) if isinstance(item, Exchange) else None
        if hint is None:
            i = 0
        else:
            session = hint[1]  # by its id alone, whichever API it uses
            got = self._of.get(session)
            if got is None:
                load = self._load
                i = min(
                    (k for k in range(self.n) if k not in avoid), key=load.__getitem__, default=0
                )
                self._of[session] = i
                if len(self._of) > self._remember:
                    self._of.popitem(last=False)
            else:
                i = got
                self._of.move_to_end(session)
        self._load[i] += 1
        self._sent += 1
        if self._sent % self._half_life == 0:  # what a worker did long ago counts less
            self._load = [x / 2 for x in self._load]
        return i


def defer_global(transforms: Sequence[Transform]) -> list[Transform]:
    """The steps with reuse across sessions left to the pipeline (see GlobalReuse)."""
    from tracetap.tokens.enrich import TokenEnricher

    for step in transforms:
        if isinstance(step, TokenEnricher):
            step.defer_global = True
    return list(transforms)


def _worker(
    steps: Callable[[], Sequence[Transform]], reuse: bool, inbox: Any, outbox: Any, parent: int
) -> None:
    """Normalize what arrives in `inbox` ((batch, [(seq, item)])) until None; answer in
    `outbox`."""
    private_files()  # whatever a step writes (a new pseudonym key) is the user's alone
    keep_freed_memory()
    try:
        normalizer = Normalizer(defer_global(steps()), reuse=reuse, resent_refs=True)
    except Exception as exc:
        outbox.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    collect_less()
    outbox.put(("ready", None))
    while True:
        try:
            task = inbox.get(timeout=_POLL)
        except queue.Empty:
            if os.getppid() != parent:  # the pipeline's process died (kill -9): nothing to do
                return
            continue
        if task is None:
            return
        batch, part = task
        errors = normalizer.adapter_errors
        out: list[Record | Failed | Exception] = list(normalizer.batch([item for _, item in part]))
        for i, rec in enumerate(out):
            if isinstance(rec, Exception):  # the pipeline's process normalizes it again
                log.error("normalizing %s failed", getattr(part[i][1], "uid", "?"), exc_info=rec)
                out[i] = Failed(f"{type(rec).__name__}: {rec}")
        outbox.put(
            (
                "done",
                (
                    batch,
                    [(seq, rec) for (seq, _), rec in zip(part, out)],
                    normalizer.adapter_errors - errors,
                ),
            )
        )


class NormalizerPool:
    """`workers` processes (spawned: no forked locks), each with its own Normalizer built by
    `steps` (a picklable callable returning the transforms; workers inherit this process's
    niceness). `send` hands a batch out, `receive` waits for it; exchanges of a worker that died
    are normalized by `fallback` instead."""

    def __init__(
        self,
        workers: int,
        steps: Callable[[], Sequence[Transform]],
        *,
        reuse: bool = True,
        fallback: Callable[[Any], Record] | None = None,
    ) -> None:
        if workers < 2:
            raise ValueError("NormalizerPool needs at least two workers")
        ctx = mp.get_context("spawn")
        self.n = workers
        self.fallback = fallback
        self._outbox = ctx.Queue()
        self._inboxes = [ctx.Queue() for _ in range(workers)]
        self._procs = [
            ctx.Process(
                target=_worker,
                args=(steps, reuse, box, self._outbox, os.getpid()),
                name=f"tracetap-normalize-{i}",
                daemon=True,
            )
            for i, box in enumerate(self._inboxes)
        ]
        self._dead: set[int] = set()
        self._route = SessionRouter(workers)
        self._batch = 0
        # batch -> (items, records so far, parts still out by worker)
        self._pending: dict[int, tuple[list[Any], list[Any], dict[int, list[Any]]]] = {}
        self._sent_at: dict[int, float] = {}
        self._state = threading.Lock()  # the above, between a sending and a receiving thread
        self.adapter_errors = 0

    def start(self, timeout: float = 120.0) -> None:
        """Start every worker; raises RuntimeError when one cannot build its steps."""
        for proc in self._procs:
            proc.start()
        for _ in self._procs:
            try:
                kind, detail = self._outbox.get(timeout=timeout)
            except queue.Empty:
                self.stop()
                raise RuntimeError("an ingest worker did not start") from None
            if kind == "error":
                self.stop()
                raise RuntimeError(f"an ingest worker could not start: {detail}")

    def send(self, items: Sequence[Any]) -> int:
        """Hand a batch to the workers (without waiting); returns its number for `receive`.
        Batches are received in the order they were sent (one thread may send while another
        receives)."""
        with self._state:
            self._batch += 1
            parts: dict[int, list[tuple[int, Any]]] = {}
            for seq, item in enumerate(items):
                parts.setdefault(self._route(item, self._dead), []).append((seq, item))
            out: list[Any] = [None] * len(items)
            waiting: dict[int, list[tuple[int, Any]]] = {}
            for i, part in sorted(parts.items()):
                if i in self._dead:
                    self._locally(part, out)
                else:
                    self._inboxes[i].put((self._batch, part))
                    waiting[i] = part
            self._pending[self._batch] = (list(items), out, waiting)
            self._sent_at[self._batch] = time.monotonic()
            return self._batch

    def receive(self, batch: int) -> list[Record]:
        """The records of a batch sent earlier, in its items' order."""
        with self._state:
            items, out, waiting = self._pending[batch]
        while True:
            with self._state:
                if not waiting:
                    break
            try:
                _, (number, done, errors) = self._outbox.get(timeout=_POLL)
            except queue.Empty:
                with self._state:
                    if time.monotonic() - self._sent_at[batch] > STUCK_AFTER:
                        for i in waiting:
                            log.error(
                                "ingest worker %d gave no answer for %.0f s; stopping it",
                                i,
                                STUCK_AFTER,
                            )
                            self._procs[i].kill()
                            self._procs[i].join(10)
                    self._give_up_on_dead()
                continue
            with self._state:
                entry = self._pending.get(number)
                shard = (
                    next((i for i, part in entry[2].items() if part[0][0] == done[0][0]), None)
                    if entry and done
                    else None
                )
                if entry is None or shard is None:  # from a worker given up on earlier
                    continue
                del entry[2][shard]
                for seq, rec in done:
                    entry[1][seq] = rec
                self.adapter_errors += errors
        with self._state:
            del self._pending[batch], self._sent_at[batch]
            for seq, rec in enumerate(out):
                if isinstance(rec, Failed):
                    out[seq] = self._local(items[seq])
        return out

    def take_adapter_errors(self) -> int:
        """Adapter errors counted by the workers since the last call."""
        with self._state:
            n, self.adapter_errors = self.adapter_errors, 0
            return n

    def _give_up_on_dead(self) -> None:
        """Normalize here what dead workers still owed, oldest batch first (session order).
        The caller holds the state lock, so no batch is sent meanwhile."""
        for i, proc in enumerate(self._procs):
            if i in self._dead or proc.is_alive():
                continue
            log.error("ingest worker %d died; its sessions are normalized here", i)
            self._dead.add(i)
            for number in sorted(self._pending):
                _, out, waiting = self._pending[number]
                if i in waiting:
                    self._locally(waiting.pop(i), out)

    def _local(self, item: Any) -> Record:
        if self.fallback is None:
            raise RuntimeError("an ingest worker failed and there is no fallback")
        return self.fallback(item)

    def _locally(self, part: list[tuple[int, Any]], out: list[Any]) -> None:
        for seq, item in part:
            if out[seq] is None:
                out[seq] = self._local(item)

    def stop(self, timeout: float = 30.0) -> None:
        for box, proc in zip(self._inboxes, self._procs):
            if proc.is_alive():
                box.put(None)
        for proc in self._procs:
            if proc.pid is not None:
                proc.join(timeout)
                if proc.is_alive():
                    proc.kill()
        for i, box in enumerate(self._inboxes):
            if i in self._dead:  # nobody reads it: do not wait on exit to flush it
                box.cancel_join_thread()
            box.close()
        self._outbox.close()
