"""The ingest pipeline: captured exchanges -> adapters -> transforms -> journal -> database,
in two background threads (journal, writer) fed by a bounded queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from tracetap.ingest.normalize import CREDENTIAL_HEADERS, Normalizer, Transform, drop_credentials
from tracetap.ingest.pool import NormalizerPool, defer_global
from tracetap.ingest.records import (
    Mark,
    Record,
    RoundRecord,
    SideEntry,
    failed_facts,
    from_journal,
    to_journal,
)
from tracetap.model import Exchange, Round
from tracetap.storage.db import ensure_schema
from tracetap.storage.journal import Journal
from tracetap.storage.writer import (
    BLOB_REF,
    SideRecord,
    Writer,
    WriterExtension,
    is_blob_ref,
    is_prefix_ref,
)
from tracetap.tokens.enrich import CHAIN, GlobalReuse
from tracetap.wire.events import UNKNOWN_KEY

__all__ = [
    "CREDENTIAL_HEADERS",
    "Pipeline",
    "PipelineStats",
    "Transform",
    "drop_credentials",
    "schema_checked",
]

log = logging.getLogger("tracetap.ingest")


@dataclass
class PipelineStats:
    rounds_recorded: int = 0
    side_recorded: int = 0
    upstream_errors: int = 0
    adapter_errors: int = 0
    write_seconds_total: float = 0.0
    writes: int = 0
    last_write_seconds: float = 0.0
    ingest_errors: int = 0
    db_healthy: bool = True
    last_db_error: str | None = None
    by_kind: dict[str, int] = field(default_factory=dict)
    # stream events of a type the API does not document, by (api, type): kept raw, counted
    unknown_events: dict[tuple[str, str], int] = field(default_factory=dict)


_STOP = object()
FINAL_TRIES = 3  # attempts to write the journal's backlog when stopping (a stale connection)


class Pipeline:
    """Background ingest, an `IngestSink`. `submit` queues and returns, except when the queue
    (`queue_max` exchanges) is full: then it normalizes and journals the exchange itself, with
    an fsync, in the caller's thread, which slows the caller rather than lose the exchange.

    The writer takes whatever is queued (waiting at most `linger` for more), journals it with
    an fsync, then writes it to the database; under load batches form by themselves, and an
    exchange waits in memory only for the time it takes to process the ones before it.
    """

    def __init__(
        self,
        engine: Engine,
        journal_dir: str | Path,
        *,
        transforms: Sequence[Transform] = (),
        batch_max: int = 256,
        linger: float = 0.0,
        queue_max: int = 10_000,
        retry_interval: float = 2.0,
        extensions: Sequence[WriterExtension] = (),
        reuse: bool = True,
        workers: int = 1,
        worker_steps: Callable[[], Sequence[Transform]] | None = None,
        schema_checked: bool = True,
    ) -> None:
        if workers > 1 and worker_steps is None:
            raise ValueError(
                "workers > 1 needs worker_steps: a picklable callable that builds "
                "the transforms in each worker process"
            )
        self.engine = engine
        self.writer = Writer(engine, extensions)
        self.journal = Journal(journal_dir)
        # called from the journaling thread with the newest `Mark` whose exchanges are journaled
        self.on_journaled: Callable[[Any], None] | None = None
        self.failure: str | None = None  # why a thread of this pipeline stopped
        self._schema_checked = schema_checked  # else checked before the first write
        self.transforms = list(transforms)
        self.batch_max = batch_max
        self.linger = linger
        self.retry_interval = retry_interval
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_max)
        self.stats = PipelineStats()
        self._thread: threading.Thread | None = None  # exchanges -> journal
        self._db_thread: threading.Thread | None = None  # journal -> database
        self._db_queue: queue.Queue[Any] = queue.Queue()
        self._journal_lock = threading.Lock()
        self._normalize_lock = threading.Lock()
        self._journaled: set[str] = set()
        self._rotation_seen = 0
        self._next_retry = 0.0
        self.reuse = reuse
        self.workers = max(1, workers)
        self.worker_steps = worker_steps
        self.global_reuse = GlobalReuse()  # for enrichers that defer it (several workers)
        self._pool: NormalizerPool | None = None
        self._collect_thread: threading.Thread | None = None  # workers' records -> journal
        self._sent: queue.Queue[tuple[int, int, Mark | None] | None] = queue.Queue()
        self._room = threading.Condition()
        self._in_flight = 0  # exchanges at the workers, not yet journaled
        if self.workers > 1:  # here only for what the workers cannot take (see _normalized_here)
            self.normalizer = Normalizer(reuse=reuse)
            self._local_steps = False
        else:
            self.normalizer = Normalizer(self.transforms, reuse=reuse)
            self._local_steps = True

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Replay what an earlier run left in the journal, start the workers (if any), then
        both threads."""
        self.journal.recover()
        self._drain_journal()
        if self.workers > 1:
            assert self.worker_steps is not None
            self._pool = NormalizerPool(
                self.workers, self.worker_steps, reuse=self.reuse, fallback=self._fallback
            )
            self._pool.start()
        self._thread = threading.Thread(
            target=self._guarded, args=(self._run_journal,), name="tracetap-journal", daemon=True
        )
        self._db_thread = threading.Thread(
            target=self._guarded, args=(self._run_db,), name="tracetap-writer", daemon=True
        )
        self._thread.start()
        self._db_thread.start()
        if self._pool is not None:
            self._collect_thread = threading.Thread(
                target=self._guarded,
                args=(self._run_collect,),
                name="tracetap-collect",
                daemon=True,
            )
            self._collect_thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Journal everything queued, write it to the database when reachable, and stop."""
        if self._thread is not None:
            self.queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._collect_thread is not None:  # the journal thread told it to finish
            self._collect_thread.join(timeout)
            self._collect_thread = None
        if self._db_thread is not None:
            self._db_queue.put(_STOP)
            self._db_thread.join(timeout)
            self._db_thread = None
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        self.journal.close()

    @property
    def backlog_bytes(self) -> int:
        """Journaled bytes not yet in the database."""
        return self.journal.backlog_bytes

    @property
    def reason(self) -> str | None:
        return self.failure

    @property
    def alive(self) -> bool:
        return all(t is not None and t.is_alive() for t in (self._thread, self._db_thread))

    @property
    def queue_depth(self) -> int:
        """Exchanges waiting: queued, or at the workers and not yet journaled."""
        return self.queue.qsize() + self._in_flight

    # -- hot path -------------------------------------------------------------------------
    def put(self, item: Exchange | SideRecord | Mark) -> None:
        """Queue an exchange (or a `Mark`), waiting for room: for a feeder whose exchanges are
        safe elsewhere meanwhile (the spool)."""
        self.queue.put(item)

    def submit(self, item: Exchange | SideRecord, kept: Callable[[], None] | None = None) -> None:
        """Queue an exchange; `kept` is called at once (this pipeline holds what is queued in
        memory until its journal thread takes it: the spool of `IngestProcess` is what makes
        an exchange durable before its response ends)."""
        if kept is not None:
            kept()
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            # Overloaded: journal it here rather than lose it (back-pressure on the proxy).
            log.warning("ingest queue full; journaling synchronously")
            with self._normalize_lock:  # the steps keep per-session state
                records = [self._local(item, dedupe=False)]
            self._db_queue.put((records, self._journal_records(records)))

    # -- worker ---------------------------------------------------------------------------
    def _run_journal(self) -> None:
        """Normalize, transform and journal (fsync) exchanges as fast as they come; a slow or
        unreachable database never holds them in memory. With workers, this thread hands
        batches out (up to 2 × batch_max exchanges at once) and `_run_collect` journals them."""
        stopping = False
        while not stopping:
            items = self._take()
            if _STOP in items:
                stopping = True
                items = [i for i in items if i is not _STOP]
            marks = [i for i in items if isinstance(i, Mark)]
            mark = marks[-1] if marks else None
            if marks:
                items = [i for i in items if not isinstance(i, Mark)]
            if self._pool is not None:
                if items or mark is not None:
                    with self._room:
                        while self._in_flight >= 2 * self.batch_max:
                            self._room.wait()
                        self._in_flight += len(items)
                    self._sent.put((self._pool.send(items), len(items), mark))
                if stopping:
                    self._sent.put(None)
                continue
            if items:
                with self._normalize_lock:
                    records = [self._finish(rec) for rec in self._normalized_here(items)]
                self._db_queue.put((records, self._journal_records(records)))
            self._journaled_upto(mark)

    def _take(self) -> list[Any]:
        """What is queued, at least one and up to `batch_max` (lingering for more)."""
        items: list[Any] = [self.queue.get()]
        deadline = time.monotonic() + self.linger
        while len(items) < self.batch_max:
            try:
                items.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return items

    def _run_collect(self) -> None:
        """The workers' records, batch after batch in the order sent: finish and journal."""
        assert self._pool is not None
        while (sent := self._sent.get()) is not None:
            batch, n, mark = sent
            done = self._pool.receive(batch)
            errors = self._pool.take_adapter_errors()  # (lock order: pool, then normalize)
            with self._normalize_lock:
                self.stats.adapter_errors += errors
                records = [self._finish(rec) for rec in done]
            if records:
                self._db_queue.put((records, self._journal_records(records)))
            self._journaled_upto(mark)
            with self._room:
                self._in_flight -= n
                self._room.notify_all()

    def _run_db(self) -> None:
        """Write journaled records to the database in order; retry from the journal."""
        stopping = False
        while not stopping:
            try:
                batches = [self._db_queue.get(timeout=self.retry_interval)]
            except queue.Empty:
                self._drain_journal()
                continue
            while True:
                try:
                    batches.append(self._db_queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batches:
                stopping = True
                batches = [b for b in batches if b is not _STOP]
            if batches:
                self._drain_journal(batches)
            if stopping:  # a last try now, whenever the retry was due: flush before exit
                for attempt in range(FINAL_TRIES):
                    self._drain_journal(force=True)
                    if self.journal.clean or attempt == FINAL_TRIES - 1:
                        break
                    time.sleep(0.5)

    def _local(self, item: Exchange | SideRecord, *, dedupe: bool = True) -> Record:
        """Normalize and finish in this process (the caller holds the normalize lock)."""
        return self._finish(self._normalized_here([item])[0], dedupe=dedupe)

    def _fallback(self, item: Exchange | SideRecord) -> Record:
        """For NormalizerPool: an exchange its worker could not take (the worker died)."""
        with self._normalize_lock:
            return self._normalized_here([item])[0]

    def _normalized_here(self, items: list[Exchange | SideRecord]) -> list[Record]:
        """This process's normalizer (a batch at once, see `Normalizer.batch`): always without
        workers; with them, only for an exchange a worker could not take or one journaled
        synchronously on overload (its round then lacks its session's earlier rounds for token
        reuse). An exchange on which a step raised outside its own guard (a bug, or input
        no step can take, such as JSON nested past any recursion limit) becomes a side record
        of its facts, kind "ingest_error:<exception>", and is logged: it never stops ingest."""
        if not self._local_steps:  # workers' steps, built here on first need
            assert self.worker_steps is not None
            self.normalizer.transforms = defer_global(self.worker_steps())
            self._local_steps = True
        errors = self.normalizer.adapter_errors
        records = self.normalizer.batch(items)
        self.stats.adapter_errors += self.normalizer.adapter_errors - errors
        out: list[Record] = []
        for item, rec in zip(items, records):
            if isinstance(rec, Exception):
                log.error("ingest failed on %s", getattr(item, "uid", "?"), exc_info=rec)
                self.stats.ingest_errors += 1
                rec = SideEntry(failed_facts(item, rec))
            out.append(rec)
        return out

    def _finish(self, rec: Record, *, dedupe: bool = True) -> Record:
        """The steps that need every session: reuse across sessions (block index), content
        journaled or stored already (by any session)."""
        if isinstance(rec, SideEntry):
            if rec.chain is not None:  # a count_tokens request's prompt
                self.global_reuse({CHAIN: rec.chain}, rec.side["uid"])
                rec.chain = None
            return rec
        tokens = rec.round["annotations"].get("tokens")
        if isinstance(tokens, dict) and CHAIN in tokens:
            self.global_reuse(tokens, rec.round["uid"])
        if dedupe and rec.hashes is not None:
            self._dedupe(rec.round, rec.hashes)
        rec.hashes = None
        return rec

    def _dedupe(self, r: dict[str, Any], hashes: dict[str, Any]) -> None:
        """Replace content already journaled (this segment) or stored by {"$blob": hash}.

        A session re-sends its whole history on every request; this keeps the journal (and
        the work of writing it) proportional to new content. Sound because the journal is only
        truncated once everything in it is in the database.
        """
        if self.journal.rotations != self._rotation_seen:
            self._journaled.clear()
            self._rotation_seen = self.journal.rotations

        def ref(obj: Any, h: str | None) -> Any:
            if obj is None or is_blob_ref(obj):
                return obj
            if h in self._journaled or self.writer.knows(h):  # type: ignore[arg-type]
                return {BLOB_REF: h}
            self._journaled.add(h)  # type: ignore[arg-type]
            return obj

        journaled = self._journaled  # the common case inline: re-sent, journaled already
        messages, message_hashes = r["messages"], hashes["messages"]  # after a "$prefix"
        head = []
        if messages and is_prefix_ref(messages[0]):  # an earlier round's messages, journaled
            head, messages = messages[:1], messages[1:]
        r["messages"] = head + [
            {BLOB_REF: h} if h in journaled else ref(obj, h)
            for obj, h in zip(messages, message_hashes)
        ]
        if isinstance(r["system"], list):
            r["system"] = list(map(ref, r["system"], hashes["system"]))
        if r["tools"]:
            r["tools"] = ref(r["tools"], hashes["tools"])

    def _journal_records(self, records: list[Record]) -> tuple[int, int]:
        """Append under the lock; returns the (start, end) journal offsets of the records."""
        with self._journal_lock:
            start = self.journal.end
            self.journal.append(list(map(to_journal, records)))
            return start, self.journal.end

    def _drain_journal(
        self,
        batches: list[tuple[list[Record], tuple[int, int]]] | None = None,
        *,
        force: bool = False,
    ) -> None:
        """Write journaled records to the database; on failure keep them for a retry.

        `batches` are records the journal thread just appended, with their offsets: when they
        follow on from what is committed, they are stored from memory; otherwise (a backlog
        after an outage or a restart) the journal itself is replayed.
        """
        target = batches[-1][1][1] if batches else self.journal.end
        if target <= self.journal.committed:
            return
        if not force and not self.stats.db_healthy and time.monotonic() < self._next_retry:
            return
        started = time.perf_counter()
        try:
            if not self._schema_checked:
                ensure_schema(self.engine)
                self._schema_checked = True
            if batches and self.stats.db_healthy and batches[0][1][0] == self.journal.committed:
                self._store([rec for records, _ in batches for rec in records])
            else:
                for chunk in self.journal.pending(upto=target):
                    self._store(list(map(from_journal, chunk)))
            with self._journal_lock:
                self.journal.commit(target)
        except Exception as exc:  # database down or failing: data stays in the journal
            if self.stats.db_healthy:
                log.error(
                    "database write failed, buffering in the journal: %s",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            self.stats.db_healthy = False
            self.stats.last_db_error = str(exc).splitlines()[0][:500]
            self._next_retry = time.monotonic() + self.retry_interval
            return
        if not self.stats.db_healthy:
            log.warning("database reachable again; journal backlog written")
        self.stats.db_healthy = True
        self.stats.last_db_error = None
        elapsed = time.perf_counter() - started
        self.stats.writes += 1
        self.stats.write_seconds_total += elapsed
        self.stats.last_write_seconds = elapsed

    def _store(self, records: list[Record]) -> None:
        rounds: list[Round | SideRecord] = []
        for rec in records:
            if isinstance(rec, RoundRecord):
                rounds.append(Round.from_dict(rec.round))
            else:
                rounds.append(rec.side)
        stored = self.writer.write(rounds)
        self.stats.rounds_recorded += stored
        for r in rounds:
            if isinstance(r, Round):
                self.stats.by_kind[r.kind or "?"] = self.stats.by_kind.get(r.kind or "?", 0) + 1
                if r.error_type or (r.status or 0) >= 500:
                    self.stats.upstream_errors += 1
                for event in (r.response or {}).get(UNKNOWN_KEY) or ():
                    key = (r.api, str(event.get("type")))
                    self.stats.unknown_events[key] = self.stats.unknown_events.get(key, 0) + 1
            else:
                self.stats.side_recorded += 1

    def _journaled_upto(self, mark: Mark | None) -> None:
        if mark is not None and self.on_journaled is not None:
            self.on_journaled(mark.position)

    def _guarded(self, run: Callable[[], None]) -> None:
        """Run a thread's loop; an exception it did not expect is logged and kept as the
        pipeline's `failure`, and the pipeline is then not `alive` (its owner restarts it)."""
        try:
            run()
        except BaseException as exc:
            self.failure = f"{threading.current_thread().name}: {type(exc).__name__}: {exc}"
            log.critical("ingest thread stopped: %s", self.failure, exc_info=exc)


def schema_checked(engine: Engine) -> bool:
    """Check (or create) the schema: True when done; False when a database server cannot be
    reached (its rounds wait in the journal meanwhile). A SQLite file that cannot be opened,
    or a schema this code does not know, raises: those are mistakes to fix, not outages."""
    try:
        ensure_schema(engine)
    except OperationalError as exc:
        if engine.dialect.name == "sqlite":
            raise
        log.debug("schema check failed: %s", exc)
        return False
    return True
