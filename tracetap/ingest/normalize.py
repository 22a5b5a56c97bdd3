"""One captured exchange -> one journal record: decode, frame, adapter, interning, transforms,
identity, and the content hash of each element. Only per-session state, so sessions can be split.
"""

from __future__ import annotations

import logging
import operator
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from tracetap.content import canonical, digest
from tracetap.identity import assign_identity
from tracetap.ingest.records import Record, RoundRecord, SideEntry, exchange_facts
from tracetap.ingest.reuse import Interner
from tracetap.memo import MISS, Recent
from tracetap.model import Exchange, Round
from tracetap.storage.writer import BLOB_REF, PREFIX_REF, SideRecord, is_prefix_ref
from tracetap.tokens.enrich import CHAIN
from tracetap.wire.adapters import by_name
from tracetap.wire.decoding import decode_body
from tracetap.wire.frames import frame_exchange

__all__ = [
    "CREDENTIAL_HEADERS",
    "SESSION_HEADERS",
    "Normalizer",
    "Transform",
    "drop_credentials",
    "session_hint",
]

log = logging.getLogger("tracetap.ingest")

# A step between the adapter and the journal. It may replace a round's content but never modify
# a content object in place: re-sent elements are shared between rounds (tracetap.ingest.reuse).
Transform = Callable[[Round], Round]

# Headers that carry credentials: dropped before anything is queued for the writer.
CREDENTIAL_HEADERS = frozenset(
    {
        "x-api-key",
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "chatgpt-account-id",
        "openai-organization",
        "openai-project",
        "anthropic-api-key",
        "x-goog-api-key",
        "api-key",
    }
)


# Request headers naming the agent session, as the adapters read them (any one suffices).
SESSION_HEADERS = frozenset(
    {
        "x-claude-code-session-id",
        "session_id",
        "session-id",
        "x-session-id",
        "thread-id",
        "thread_id",
        "conversation_id",
    }
)


def session_hint(item: Exchange) -> tuple[str, str] | None:
    """(api, the session header's value), if the client sent one."""
    for key, value in item.request_headers:
        if value and key.lower() in SESSION_HEADERS:
            return item.api, value
    return None


def drop_credentials(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in CREDENTIAL_HEADERS]


class Normalizer:
    """Turns exchanges into records (`RoundRecord`, `SideEntry`), keeping a few rounds of each
    session to reuse work.

    With `resent_refs`, an element the session re-sent (the very object of a record this
    normalizer returned before) comes back as a `{"$blob": hash}` reference at once, and
    the messages a round begins with as an earlier round did as one `{"$prefix": [uid, n]}`:
    that record is journaled first, so its content is in the journal or the database.
    """

    def __init__(
        self, transforms: Sequence[Transform] = (), *, reuse: bool = True, resent_refs: bool = False
    ) -> None:
        self.transforms = list(transforms)
        self.resent_refs = resent_refs
        self.adapter_errors = 0
        # Re-sent history: shared objects (interner), then their content hashes by identity.
        self.interner = Interner() if reuse else None
        self._hashes = {"messages": Recent(), "system": Recent()} if reuse else None
        self._tools: OrderedDict[Any, tuple[list[Any], str]] = OrderedDict()

    def __call__(self, item: Exchange | SideRecord) -> Record:
        out = self.batch([item])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def batch(self, items: Sequence[Exchange | SideRecord]) -> list[Record | Exception]:
        """The records of `items` in order, as one call each would give them, but with each
        stage (parsing, every transform, hashing) run over the whole batch before the next:
        a stage's code and tables stay in the CPU's caches (the tokenizer's above all). Every
        stage still sees the rounds in order. An item on which a stage raised outside its own
        guard gets the exception in place of its record."""
        out: list[Any] = []
        for item in items:
            try:
                out.append(self._round(item))
            except Exception as exc:
                out.append(exc)
        for transform in self.transforms:
            for i, rnd in enumerate(out):
                if isinstance(rnd, Round):
                    try:
                        out[i] = transform(rnd)
                    except Exception as exc:
                        out[i] = exc
        for i, rnd in enumerate(out):
            if isinstance(rnd, Round):
                try:
                    out[i] = self._record(items[i], rnd)  # type: ignore[arg-type]
                except Exception as exc:
                    out[i] = exc
        return out

    def _round(self, item: Exchange | SideRecord) -> Round | SideEntry:
        """The exchange decoded, framed, parsed and interned; or its record when it is not a
        round (a side record, an adapter's failure)."""
        if not isinstance(item, Exchange):
            return SideEntry(item)
        if item.request_encoding:
            try:
                item.request_body = decode_body(item.request_body, item.request_encoding)
                item.request_encoding = None
            except ValueError as exc:  # kept raw, and the round flagged (tracetap.wire.faults)
                if not (item.error or "").startswith("truncated"):  # a cut body cannot decode
                    item.error = f"request body: {exc}"
        frame_exchange(item)  # the proxy kept raw chunks; frame them here, off its hot path
        try:
            rnd = by_name(item.api).to_round(item)
        except Exception as exc:  # an adapter bug must never lose the exchange's facts
            self.adapter_errors += 1
            # the path only, never the query string (it may carry a key)
            log.exception(
                "adapter %s failed on %s %s", item.api, item.method, item.path.split("?", 1)[0]
            )
            return SideEntry(exchange_facts(item, f"adapter_error:{type(exc).__name__}"))
        rnd.request_headers = drop_credentials(rnd.request_headers)
        if self.interner is not None:
            try:
                self.interner(rnd)
            except Exception:  # only an optimization: the round goes on as parsed
                log.exception("interning failed on %s", rnd.uid)
        return rnd

    def _record(self, item: Exchange, rnd: Round) -> Record:
        """The transformed round's record: identity, then content hashes (or a side record)."""
        assign_identity(rnd)  # needs the content, which dedupe may replace by references
        if rnd.endpoint.endswith("count_tokens"):
            side = self._side_round(item, rnd)
            tokens = rnd.annotations.get("tokens")
            if isinstance(tokens, dict) and CHAIN in tokens:  # its blocks count as seen
                side.chain = tokens[CHAIN]
            return side
        return self._with_hashes(rnd.to_dict())

    @staticmethod
    def _side_round(item: Exchange, rnd: Round) -> SideEntry:
        """A count_tokens request: kept as a side request, with its content."""
        return SideEntry(
            {
                "uid": rnd.uid,
                "kind": "count_tokens",
                "method": item.method,
                "host": item.host,
                "path": item.path.split("?", 1)[0],
                "status": rnd.status,
                "request_at": rnd.request_at,
                "end_at": rnd.end_at,
                "request_bytes": rnd.request_bytes,
                "response_bytes": rnd.response_bytes,
                "input_tokens": rnd.usage.input_tokens_total,
                "request": {
                    "envelope": rnd.envelope,
                    "system": rnd.system,
                    "tools": rnd.tools,
                    "messages": rnd.messages,
                },
                "response": rnd.response,
            }
        )

    # -- content hashes -----------------------------------------------------------------------
    def _with_hashes(self, r: dict[str, Any]) -> RoundRecord:
        session = (r["provider"], r["agent_session_id"])
        hashes: dict[str, Any] = {"system": None, "tools": None}
        message_hashes, r["messages"] = self._content_hashes(
            "messages", session, r["messages"], r["uid"]
        )
        head = r["messages"][:1]  # the pipeline needs the hashes after a "$prefix" only
        hashes["messages"] = (
            message_hashes[head[0][PREFIX_REF][1] :]
            if head and is_prefix_ref(head[0])
            else message_hashes
        )
        if isinstance(r["system"], list):
            hashes["system"], r["system"] = self._content_hashes("system", session, r["system"])
        if r["tools"]:
            hashes["tools"], resent = self._tools_hash(session, r["tools"])
            if resent and self.resent_refs:
                r["tools"] = {BLOB_REF: hashes["tools"]}
        return RoundRecord(r, hashes)

    def _content_hashes(
        self, part: str, session: Any, items: list[Any], uid: str | None = None
    ) -> tuple[list[str | None], list[Any]]:
        """(content address of each element, the elements): the session's re-sent ones keep
        their address (by identity) and, with `resent_refs`, become references; messages
        that begin as an earlier round's (`uid` names each round) become one reference to
        that round's first n, {"$prefix": [its uid, n]}. The lists the round shares with the
        interner and the steps' caches are never modified."""
        if self._hashes is None:
            return [None if p is None else digest(canonical(p)) for p in items], items
        recent = self._hashes[part]
        done, origin, lead = recent.match_from(session, items)
        out = [
            (None if p is None else digest(canonical(p))) if h is MISS else h
            for p, h in zip(items, done)
        ]
        recent.keep(session, items, out, uid)
        if self.resent_refs:
            # the writer keeps a round's message hashes without those of null messages
            head: list[Any] = []
            if origin is not None and lead and None not in out[:lead]:
                head = [{PREFIX_REF: [origin, lead]}]
            else:
                lead = 0
            items = head + [
                p if d is MISS or p is None else {BLOB_REF: h}
                for p, d, h in zip(items[lead:], done[lead:], out[lead:])
            ]
        return out, items

    def _tools_hash(self, session: Any, tools: Any) -> tuple[str, bool]:
        """(hash, re-sent): the tools list is a new list every round, re-sent when its
        elements are."""
        if self._hashes is None or not isinstance(tools, list):
            return digest(canonical(tools)), False
        key = (session, "tools")
        prev = self._tools.get(key)
        if (
            prev is not None
            and len(prev[0]) == len(tools)
            and all(map(operator.is_, prev[0], tools))
        ):
            self._tools.move_to_end(key)
            return prev[1], True
        h = digest(canonical(tools))
        self._tools[key] = (list(tools), h)
        while len(self._tools) > 64:
            self._tools.popitem(last=False)
        return h, False
