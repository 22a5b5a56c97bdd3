"""`IngestProcess`: the ingest pipeline in a supervised child process, so parsing, scrubbing and
tokenizing never take the proxy's interpreter lock. The proxy spools each exchange to disk
(`tracetap.ingest.spool`); the child reads the spool, and is restarted when it dies.
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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tracetap.allocator import collect_less, keep_freed_memory
from tracetap.ingest.pipeline import PipelineStats
from tracetap.ingest.records import Captured, Mark
from tracetap.ingest.spool import Position, SpoolReader, SpoolWriter
from tracetap.privacy.files import private_files
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
RESTART_BACKOFF = (1.0, 30.0)  # first and longest wait before restarting a dead child
STABLE_AFTER = 60.0  # a child alive this long resets the backoff
QUEUE_MAX = 1024  # exchanges read from the spool ahead of the pipeline (the rest wait on disk)


def spool_dir(cfg: Settings) -> Path:
    assert cfg.journal_dir is not None
    return Path(cfg.journal_dir) / "spool"


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
    """Build the pipeline, feed it from the spool (woken by `inbox`), report stats to
    `outbox`; on stop, take what is left in the spool, journal and write it."""
    private_files()  # the journal and database files it creates are the user's alone
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the proxy, which stops us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _lower_priority()
    keep_freed_memory()  # parsing 100 kB+ bodies would otherwise page-fault on every one
    try:
        from tracetap.ingest.pipeline import Pipeline, schema_checked
        from tracetap.ingest.steps import build_steps, build_transforms
        from tracetap.storage.db import make_engine

        assert cfg.db is not None and cfg.journal_dir is not None
        engine = make_engine(cfg.db)
        schema_ok = schema_checked(engine)
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
            queue_max=QUEUE_MAX,
            workers=cfg.ingest_workers,
            worker_steps=steps,
            schema_checked=schema_ok,
        )
        spool = SpoolReader(spool_dir(cfg))
        pipeline.on_journaled = spool.checkpoint
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
            failure=pipeline.failure,
        )
        outbox.put(("final" if final else "stats", snap))

    def feed() -> None:
        for items, position in spool.read():
            for item in items:
                pipeline.put(item)
            pipeline.put(Mark(position))

    last = 0.0
    while True:
        try:
            message = inbox.get(timeout=_STATS_EVERY)
        except queue.Empty:
            message = ...
        feed()
        if message is _STOP or os.getppid() != parent:  # stopped, or the proxy died: flush
            break
        if not pipeline.alive:  # a thread stopped: exit so the proxy starts a new process
            report()
            os._exit(3)
        now = time.monotonic()
        if now - last >= _STATS_EVERY:
            report()
            last = now
    feed()
    pipeline.stop()
    report(final=True)


class IngestProcess:
    """An `IngestSink`: exchanges go to the spool (`submit` only queues them for its writer
    thread) and a child process (spawned, so no forked locks) ingests them from there. A
    child that dies is started again, with a growing pause between attempts, and resumes at
    the spool's checkpoint. `settings` must name the store and the journal
    (`tracetap.ingest.sink.resolved`)."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self.spool: SpoolWriter | None = None
        self.stats = PipelineStats()
        self.restarts = 0
        self.problem: str | None = None  # why ingest is not working right now, if it is not
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._inbox: Any = None
        self._outbox: Any = None
        self._snapshot: dict[str, Any] = {}
        self._final = threading.Event()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._last_drop_log = 0.0

    @property
    def dropped(self) -> int:
        """Exchanges that could not be kept (the spool's disk and memory both full)."""
        return self.spool.dropped if self.spool is not None else 0

    def start(self, timeout: float = 120.0) -> None:
        """Open the spool and start the child; raises RuntimeError with the child's reason
        when it cannot start."""
        self.spool = SpoolWriter(spool_dir(self.cfg), on_written=self._wake)
        try:
            self._launch(timeout)
        except BaseException:
            self.spool.close()
            raise
        self._supervisor = threading.Thread(
            target=self._supervise, name="tracetap-supervisor", daemon=True
        )
        self._supervisor.start()

    def _launch(self, timeout: float) -> None:
        self._inbox = self._ctx.Queue(maxsize=64)
        self._outbox = self._ctx.Queue()
        self._final = threading.Event()
        self._proc = self._ctx.Process(
            target=_child,
            args=(self.cfg, self._inbox, self._outbox, os.getpid()),
            name="tracetap-ingest",
            daemon=False,
        )
        self._proc.start()
        try:
            kind, detail = self._outbox.get(timeout=timeout)
        except queue.Empty:
            self._proc.kill()
            raise RuntimeError("the ingest process did not start") from None
        if kind == "error":
            self._proc.join(10)
            raise RuntimeError(detail)
        reader = threading.Thread(
            target=self._read_stats, args=(self._proc, self._outbox), name="tracetap-stats"
        )
        reader.daemon = True
        reader.start()

    def _supervise(self) -> None:
        """Restart a dead child; every failure is logged (once a minute while it lasts)."""
        pause = RESTART_BACKOFF[0]
        started = time.monotonic()
        while not self._stopping.wait(0.5):
            try:
                if self._proc.is_alive():
                    if time.monotonic() - started > STABLE_AFTER:
                        pause = RESTART_BACKOFF[0]
                    continue
                self.problem = (
                    f"the ingest process exited (code {self._proc.exitcode}); restarting it"
                )
                log.error("%s in %.0f s; captured exchanges wait in the spool", self.problem, pause)
                if self._stopping.wait(pause):
                    return
                pause = min(pause * 2, RESTART_BACKOFF[1])
                self._launch(timeout=120.0)
                started = time.monotonic()
                self.restarts += 1
                self.problem = None
                log.warning("ingest process restarted; it resumes from the spool")
            except Exception as exc:  # the child cannot start: keep trying, keep saying so
                self.problem = f"the ingest process cannot start: {exc}"
                log.error("%s", self.problem)

    def _read_stats(self, proc: Any, outbox: Any) -> None:
        while True:
            try:
                kind, snap = outbox.get(timeout=1.0)
            except queue.Empty:
                if not proc.is_alive():
                    return
                continue
            except (EOFError, OSError, ValueError):
                return
            self._snapshot = snap
            self.stats = PipelineStats(
                **{k: v for k, v in snap.items() if k in PipelineStats.__dataclass_fields__}
            )
            if kind == "final":
                self._final.set()
                return

    def _wake(self, position: Position) -> None:
        """The spool writer's news: more is on disk (the child also looks by itself)."""
        try:
            self._inbox.put_nowait(position)
        except (queue.Full, ValueError, OSError, AttributeError):
            pass

    def submit(self, item: Captured, kept: Callable[[], None] | None = None) -> None:
        """Queue an exchange for the spool: returns at once; `kept` is called once it is on
        disk, or at once while the spool's writes fail. When the spool can take no more (its
        disk full and its memory bound reached), the exchange is counted in `dropped`, `kept`
        is called at once (there is nothing to wait for) and an error is logged once a minute."""
        assert self.spool is not None
        if kept is not None and self.spool.error is not None:
            kept()  # writes fail (a full disk): held in memory, nothing to wait for
            kept = None
        if not self.spool.put(item, kept):
            if kept is not None:
                kept()
            now = time.monotonic()
            if now - self._last_drop_log >= 60:
                log.error(
                    "the spool is full (%s); %d exchanges not recorded so far",
                    self.spool.error,
                    self.spool.dropped,
                )
                self._last_drop_log = now

    def stop(self, timeout: float = 120.0) -> None:
        """Write everything captured to the spool, let the child take it, journal and write
        it to the database, and wait for it (at most about `timeout` seconds; what a child
        killed then has not journaled stays in the spool for the next start)."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        deadline = time.monotonic() + timeout
        if self.spool is not None:
            self.spool.close(timeout=min(30.0, timeout))
        if self._proc is not None and not self._proc.is_alive():
            try:  # a dead child left work in the spool: one more to take it before exit
                self._launch(timeout=max(1.0, deadline - time.monotonic()))
            except Exception as exc:
                log.error(
                    "cannot start the ingest process to flush the spool (%s); what "
                    "it holds waits for the next start",
                    exc,
                )
        proc = self._proc
        if proc is not None and proc.is_alive():
            try:
                self._inbox.put(_STOP, timeout=5)
            except (queue.Full, ValueError, OSError):
                pass
            self._final.wait(max(0.0, deadline - time.monotonic()))
            proc.join(max(1.0, deadline - time.monotonic()))
        if proc is not None and proc.is_alive():
            log.error(
                "the ingest process did not stop in time; what it had not journaled "
                "waits in the spool for the next start"
            )
            proc.kill()
            proc.join(5)
        if self._inbox is not None:
            self._inbox.cancel_join_thread()  # never wait on exit to flush a dead child's pipe
            self._inbox.close()

    @property
    def queue_depth(self) -> int:
        held = self.spool.held if self.spool is not None else 0
        return held + int(self._snapshot.get("queue_depth", 0))

    @property
    def backlog_bytes(self) -> int:
        return int(self._snapshot.get("backlog_bytes", 0))

    @property
    def alive(self) -> bool:
        """True while what is captured is recorded: kept on disk by the spool (also while a
        dead child is being restarted)."""
        return self.spool is not None and self.spool.error is None

    @property
    def reason(self) -> str | None:
        """Why recording is not healthy, if it is not."""
        if self.spool is not None and self.spool.error is not None:
            return self.spool.error
        return self.problem or self._snapshot.get("failure")
