"""The ingest pipeline: captured exchanges -> adapters -> transforms -> journal -> database.

Runs in one background thread fed by a bounded queue, so the proxy never waits on storage.
"""

from __future__ import annotations

import logging
import operator
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from tracetap.ingest.reuse import MISS, Interner, Recent
from tracetap.ingest.sessions import assign_identity
from tracetap.model import Exchange, Round
from tracetap.proxy.adapters import by_name
from tracetap.proxy.decoding import decode_body
from tracetap.proxy.frames import frame_exchange
from tracetap.storage.journal import Journal
from tracetap.storage.content import canonical, digest
from tracetap.storage.writer import BLOB_REF, SideRecord, Writer, WriterExtension

__all__ = ["Pipeline", "PipelineStats", "Transform", "drop_credentials"]

log = logging.getLogger("tracetap.ingest")

# A step between the adapter and the journal. It may replace a round's content but never modify
# a content object in place: re-sent elements are shared between rounds (tracetap.ingest.reuse).
Transform = Callable[[Round], Round]

# Headers that carry credentials: dropped before anything is queued for the writer.
CREDENTIAL_HEADERS = frozenset({
    "x-api-key", "authorization", "proxy-authorization", "cookie", "set-cookie",
    "chatgpt-account-id", "openai-organization", "openai-project", "anthropic-api-key",
    "x-goog-api-key", "api-key",
})


def drop_credentials(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in CREDENTIAL_HEADERS]


@dataclass
class PipelineStats:
    rounds_recorded: int = 0
    side_recorded: int = 0
    upstream_errors: int = 0
    adapter_errors: int = 0
    write_seconds_total: float = 0.0
    writes: int = 0
    last_write_seconds: float = 0.0
    db_healthy: bool = True
    last_db_error: str | None = None
    by_kind: dict[str, int] = field(default_factory=dict)


_STOP = object()


class Pipeline:
    """Background ingest. `submit` is safe to call from the proxy's event loop (never blocks).

    The writer takes whatever is queued (waiting at most `linger` for more), journals it with
    an fsync, then writes it to the database; under load batches form by themselves, and an
    exchange waits in memory only for the time it takes to process the ones before it.
    """

    def __init__(self, engine: Engine, journal_dir: str | Path, *,
                 transforms: Sequence[Transform] = (), batch_max: int = 256,
                 linger: float = 0.0, queue_max: int = 10_000,
                 retry_interval: float = 2.0,
                 extensions: Sequence[WriterExtension] = (), reuse: bool = True) -> None:
        self.engine = engine
        self.writer = Writer(engine, extensions)
        self.journal = Journal(journal_dir)
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
        # Re-sent history: shared objects (interner), then their content hashes by identity.
        self._interner = Interner() if reuse else None
        self._hashes = {"messages": Recent(), "system": Recent()} if reuse else None
        self._tools: OrderedDict[Any, tuple[list[Any], str]] = OrderedDict()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Replay what an earlier run left in the journal, then start both threads."""
        self.journal.recover()
        self._drain_journal()
        self._thread = threading.Thread(target=self._run_journal, name="tracetap-journal",
                                        daemon=True)
        self._db_thread = threading.Thread(target=self._run_db, name="tracetap-writer",
                                           daemon=True)
        self._thread.start()
        self._db_thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Journal everything queued, write it to the database when reachable, and stop."""
        if self._thread is not None:
            self.queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._db_thread is not None:
            self._db_queue.put(_STOP)
            self._db_thread.join(timeout)
            self._db_thread = None
        self.journal.close()

    @property
    def backlog_bytes(self) -> int:
        """Journaled bytes not yet in the database."""
        return self.journal.backlog_bytes

    @property
    def alive(self) -> bool:
        return all(t is not None and t.is_alive() for t in (self._thread, self._db_thread))

    @property
    def queue_depth(self) -> int:
        return self.queue.qsize()

    # -- hot path -------------------------------------------------------------------------
    def submit(self, item: Exchange | SideRecord) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            # Overloaded: journal it here rather than lose it (back-pressure on the proxy).
            log.warning("ingest queue full; journaling synchronously")
            with self._normalize_lock:  # the steps keep per-session state
                records = [self._normalize(item, dedupe=False)]
            self._db_queue.put((records, self._journal_records(records)))

    # -- worker ---------------------------------------------------------------------------
    def _run_journal(self) -> None:
        """Normalize, transform and journal (fsync) exchanges as fast as they come; a slow or
        unreachable database never holds them in memory."""
        stopping = False
        while not stopping:
            items: list[Any] = [self.queue.get()]
            deadline = time.monotonic() + self.linger
            while len(items) < self.batch_max:
                try:
                    items.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            if _STOP in items:
                stopping = True
                items = [i for i in items if i is not _STOP]
            records = []
            for item in items:
                with self._normalize_lock:
                    records.append(self._normalize(item))
            if records:
                self._db_queue.put((records, self._journal_records(records)))

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
            if stopping:
                self._drain_journal()

    def _normalize(self, item: Exchange | SideRecord, *, dedupe: bool = True
                   ) -> dict[str, Any]:
        if not isinstance(item, Exchange):
            return {"t": "side", "s": item}
        if item.request_encoding:
            try:
                item.request_body = decode_body(item.request_body, item.request_encoding)
                item.request_encoding = None
            except ValueError as exc:  # kept raw: the adapter records it as unparsed
                item.error = item.error or str(exc)
        frame_exchange(item)  # the proxy kept raw chunks; frame them here, off its hot path
        try:
            rnd = by_name(item.api).to_round(item)
        except Exception as exc:  # an adapter bug must never lose the exchange's facts
            self.stats.adapter_errors += 1
            # the path only, never the query string (it may carry a key)
            log.exception("adapter %s failed on %s %s", item.api, item.method,
                          item.path.split("?", 1)[0])
            return {"t": "side", "s": {
                "uid": item.uid, "kind": f"adapter_error:{type(exc).__name__}",
                "method": item.method, "host": item.host, "path": item.path.split("?", 1)[0],
                "status": item.status, "request_at": item.request_at, "end_at": item.end_at,
                "request_bytes": len(item.request_body), "response_bytes": item.response_bytes}}
        rnd.request_headers = drop_credentials(rnd.request_headers)
        if self._interner is not None:
            try:
                self._interner(rnd)
            except Exception:  # only an optimization: the round goes on as parsed
                log.exception("interning failed on %s", rnd.uid)
        for transform in self.transforms:
            rnd = transform(rnd)
        assign_identity(rnd)  # needs the content, which _dedupe may replace by references
        if rnd.endpoint.endswith("count_tokens"):
            return {"t": "side", "s": {
                "uid": rnd.uid, "kind": "count_tokens", "method": item.method,
                "host": item.host, "path": item.path.split("?", 1)[0], "status": rnd.status,
                "request_at": rnd.request_at, "end_at": rnd.end_at,
                "request_bytes": rnd.request_bytes, "response_bytes": rnd.response_bytes,
                "input_tokens": rnd.usage.input_tokens_total,
                "request": {"envelope": rnd.envelope, "system": rnd.system, "tools": rnd.tools,
                            "messages": rnd.messages},
                "response": rnd.response}}
        data = rnd.to_dict()
        return {"t": "round", "r": self._dedupe(data) if dedupe else data}

    def _dedupe(self, r: dict[str, Any]) -> dict[str, Any]:
        """Replace content already journaled (this segment) or stored by {"$blob": hash}.

        A session re-sends its whole history on every request; this keeps the journal (and
        the work of writing it) proportional to new content. Sound because the journal is only
        truncated once everything in it is in the database.
        """
        if self.journal.rotations != self._rotation_seen:
            self._journaled.clear()
            self._rotation_seen = self.journal.rotations

        def ref(obj: Any, h: str | None) -> Any:
            if obj is None:
                return None
            if h in self._journaled or self.writer.knows(h):  # type: ignore[arg-type]
                return {BLOB_REF: h}
            self._journaled.add(h)  # type: ignore[arg-type]
            return obj

        session = (r["provider"], r["agent_session_id"])
        r["messages"] = [ref(obj, h) for obj, h in zip(
            r["messages"], self._content_hashes("messages", session, r["messages"]))]
        if isinstance(r["system"], list):
            r["system"] = [ref(obj, h) for obj, h in zip(
                r["system"], self._content_hashes("system", session, r["system"]))]
        if r["tools"]:
            r["tools"] = ref(r["tools"], self._tools_hash(session, r["tools"]))
        return r

    def _content_hashes(self, part: str, session: Any, items: list[Any]) -> list[str | None]:
        """Content address of each element; the session's re-sent ones keep theirs (by
        identity)."""
        if self._hashes is None:
            return [None if p is None else digest(canonical(p)) for p in items]
        recent = self._hashes[part]
        done = recent.match(session, items)
        out = [(None if p is None else digest(canonical(p))) if h is MISS else h
               for p, h in zip(items, done)]
        recent.keep(session, items, out)
        return out

    def _tools_hash(self, session: Any, tools: Any) -> str:
        """The tools list is a new list every round: re-sent when its elements are."""
        if self._hashes is None or not isinstance(tools, list):
            return digest(canonical(tools))
        key = (session, "tools")
        prev = self._tools.get(key)
        if prev is not None and len(prev[0]) == len(tools) \
                and all(map(operator.is_, prev[0], tools)):
            self._tools.move_to_end(key)
            return prev[1]
        h = digest(canonical(tools))
        self._tools[key] = (list(tools), h)
        while len(self._tools) > 64:
            self._tools.popitem(last=False)
        return h

    def _journal_records(self, records: list[dict[str, Any]]) -> tuple[int, int]:
        """Append under the lock; returns the (start, end) journal offsets of the records."""
        with self._journal_lock:
            start = self.journal.end
            self.journal.append(records)
            return start, self.journal.end

    def _drain_journal(self, batches: list[tuple[list[dict[str, Any]], tuple[int, int]]]
                       | None = None) -> None:
        """Write journaled records to the database; on failure keep them for a retry.

        `batches` are records the journal thread just appended, with their offsets: when they
        follow on from what is committed, they are stored from memory; otherwise (a backlog
        after an outage or a restart) the journal itself is replayed.
        """
        target = batches[-1][1][1] if batches else self.journal.end
        if target <= self.journal.committed:
            return
        if not self.stats.db_healthy and time.monotonic() < self._next_retry:
            return
        started = time.perf_counter()
        try:
            if batches and self.stats.db_healthy and \
                    batches[0][1][0] == self.journal.committed:
                self._store([rec for records, _ in batches for rec in records])
            else:
                for chunk in self.journal.pending(upto=target):
                    self._store(chunk)
            with self._journal_lock:
                self.journal.commit(target)
        except Exception as exc:  # database down or failing: data stays in the journal
            if self.stats.db_healthy:
                log.error("database write failed, buffering in the journal: %s", exc)
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

    def _store(self, records: list[dict[str, Any]]) -> None:
        rounds: list[Round | SideRecord] = []
        for rec in records:
            if rec["t"] == "round":
                rounds.append(Round.from_dict(rec["r"]))
            else:
                rounds.append(rec["s"])
        stored = self.writer.write(rounds)
        self.stats.rounds_recorded += stored
        for r in rounds:
            if isinstance(r, Round):
                self.stats.by_kind[r.kind or "?"] = self.stats.by_kind.get(r.kind or "?", 0) + 1
                if r.error_type or (r.status or 0) >= 500:
                    self.stats.upstream_errors += 1
            else:
                self.stats.side_recorded += 1
