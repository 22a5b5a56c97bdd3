"""`IngestProcess`: the ingest pipeline in a child process, so parsing, scrubbing and tokenizing
never take the proxy's interpreter lock; the proxy only hands finished exchanges over a queue.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from dataclasses import asdict
from typing import Any

from tracetap.allocator import collect_less, keep_freed_memory
from tracetap.ingest.pipeline import PipelineStats
from tracetap.settings import Settings

__all__ = ["IngestProcess"]

log = logging.getLogger("tracetap.ingest")

_STOP = None
_STATS_EVERY = 0.25


# Ingest is background work and runs at the lowest priority (nice 19 and Linux's SCHED_IDLE):
# when the cores are busy the proxy's streams get them and exchanges wait in the queue and the
# journal. Under SCHED_IDLE a proxy thread that wakes takes a core at once rather than after the
# ingest process's time slice, so one exchange's parsing does not delay the next one's first byte.
NICE = 19
SCHED_IDLE = True
RETRY_INTERVAL = 2.0  # seconds between attempts to reach an unreachable database


def _lower_priority() -> None:
    """Run (with every process started from here) below the proxy; where the system does not
    permit it, at the proxy's priority."""
    if NICE:
        try:
            os.nice(NICE)
        except OSError:
            pass
    if SCHED_IDLE and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


def _child(cfg: Settings, inbox: Any, outbox: Any, parent: int) -> None:
    """Build the pipeline, feed it from `inbox`, report stats to `outbox`, flush on stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the proxy, which stops us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _lower_priority()
    keep_freed_memory()  # parsing 100 kB+ bodies would otherwise page-fault on every one
    try:
        from tracetap.ingest.pipeline import Pipeline
        from tracetap.ingest.steps import build_steps, build_transforms
        from tracetap.storage.db import ensure_schema, make_engine

        assert cfg.db is not None and cfg.journal_dir is not None
        engine = make_engine(cfg.db)
        ensure_schema(engine)
        transforms, extensions = build_transforms(cfg.content, cfg.key_file, cfg.tokenizer)
        steps = None
        if cfg.ingest_workers > 1:
            steps = functools.partial(build_steps, cfg.content, cfg.key_file, cfg.tokenizer)
        pipeline = Pipeline(
            engine,
            cfg.journal_dir,
            transforms=transforms,
            extensions=extensions,
            retry_interval=RETRY_INTERVAL,
            workers=cfg.ingest_workers,
            worker_steps=steps,
        )
        pipeline.start()
    except Exception as exc:
        outbox.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    collect_less()  # after the steps are built: their tables are frozen out of collections
    outbox.put(("ready", None))

    def report(final: bool = False) -> None:
        snap = asdict(pipeline.stats)
        snap.update(
            queue_depth=pipeline.queue_depth,
            backlog_bytes=pipeline.journal.backlog_bytes,
            alive=pipeline.alive,
        )
        outbox.put(("final" if final else "stats", snap))

    last = 0.0
    while True:
        try:
            item = inbox.get(timeout=_STATS_EVERY)
        except queue.Empty:
            item = ...
        if item is _STOP:
            break
        if item is not ...:
            pipeline.submit(item)
        if os.getppid() != parent:  # the proxy died (kill -9): flush what we have and go
            break
        now = time.monotonic()
        if now - last >= _STATS_EVERY:
            report()
            last = now
    pipeline.stop()
    report(final=True)


class IngestProcess:
    """An `IngestSink`: a Pipeline running in a child process (spawned, so no forked locks).
    `settings` must name the store and the journal (`tracetap.ingest.sink.resolved`)."""

    def __init__(self, cfg: Settings, *, queue_max: int = 10_000) -> None:
        self.cfg = cfg
        ctx = mp.get_context("spawn")
        self._inbox = ctx.Queue(maxsize=queue_max)
        self._outbox = ctx.Queue()
        self._proc = ctx.Process(
            target=_child,
            args=(cfg, self._inbox, self._outbox, os.getpid()),
            name="tracetap-ingest",
            daemon=False,
        )
        self.stats = PipelineStats()
        self._snapshot: dict[str, Any] = {}
        self._reader: threading.Thread | None = None
        self._final = threading.Event()
        self.dropped = 0  # exchanges that could not be handed over (ingest process dead)

    def start(self, timeout: float = 120.0) -> None:
        """Start the child; raises RuntimeError with its reason when it cannot start."""
        self._proc.start()
        try:
            kind, detail = self._outbox.get(timeout=timeout)
        except queue.Empty:
            self._proc.kill()
            raise RuntimeError("the ingest process did not start") from None
        if kind == "error":
            self._proc.join(10)
            raise RuntimeError(detail)
        self._reader = threading.Thread(target=self._read_stats, name="tracetap-stats", daemon=True)
        self._reader.start()

    def _read_stats(self) -> None:
        while True:
            try:
                kind, snap = self._outbox.get(timeout=1.0)
            except queue.Empty:
                if not self._proc.is_alive():
                    return
                continue
            except (EOFError, OSError):
                return
            self._snapshot = snap
            self.stats = PipelineStats(
                **{k: v for k, v in snap.items() if k in PipelineStats.__dataclass_fields__}
            )
            if kind == "final":
                self._final.set()
                return

    def submit(self, item: Any) -> None:
        """Hand an exchange to the child: a queue put that returns at once, except when the
        queue (`queue_max` exchanges) is full: then it waits up to 30 s for room, holding the
        caller (the proxy's event loop), and drops the exchange after that or when the child
        is dead (both logged and counted in `dropped`)."""
        try:
            self._inbox.put_nowait(item)
        except queue.Full:
            if not self._proc.is_alive():
                self.dropped += 1  # /healthz is 503 by now: the process must be restarted
                log.error("the ingest process is gone; exchange not recorded")
                return
            log.warning("ingest queue full; waiting for the ingest process")
            try:
                self._inbox.put(item, timeout=30)
            except queue.Full:
                self.dropped += 1
                log.error("ingest queue still full after 30 s; exchange not recorded")

    def stop(self, timeout: float = 120.0) -> None:
        """Let the child journal and write everything queued, then wait for it."""
        if self._proc.is_alive():
            self._inbox.put(_STOP)
            self._final.wait(timeout)
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
        self._inbox.close()

    @property
    def queue_depth(self) -> int:
        try:
            waiting = self._inbox.qsize()
        except NotImplementedError:
            waiting = 0
        return waiting + int(self._snapshot.get("queue_depth", 0))

    @property
    def backlog_bytes(self) -> int:
        return int(self._snapshot.get("backlog_bytes", 0))

    @property
    def alive(self) -> bool:
        return self._proc.is_alive() and bool(self._snapshot.get("alive", True))
