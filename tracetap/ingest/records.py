"""What normalizing an exchange gives: a `RoundRecord` or a `SideEntry` (or, from a normalizer
process, a `Failed`), and their form in the journal (one JSON object a line, `to_journal`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracetap.model import Exchange
from tracetap.storage.writer import SideRecord

__all__ = [
    "Captured",
    "Failed",
    "Mark",
    "Record",
    "RoundRecord",
    "SideEntry",
    "exchange_facts",
    "failed_facts",
    "from_journal",
    "to_journal",
]


@dataclass(slots=True)
class RoundRecord:
    """A round as `Round.to_dict()` gives it, its content elements possibly replaced by
    references (`{"$blob": hash}`, `{"$prefix": [uid, n]}`), and the content hash of each
    element (`messages` after a leading "$prefix", `system`, `tools`): the pipeline uses them to
    reference content journaled or stored already; they are not journaled."""

    round: dict[str, Any]
    hashes: dict[str, Any] | None = None


@dataclass(slots=True)
class SideEntry:
    """A request kept apart from the rounds (count_tokens, an unknown endpoint, an adapter's
    failure), with the block hash chain of a count_tokens prompt (its blocks count as seen)."""

    side: SideRecord
    chain: bytes | None = None


@dataclass(slots=True)
class Failed:
    """A normalizer process could not normalize this exchange; the pipeline's process retries."""

    error: str


@dataclass(frozen=True, slots=True)
class Mark:
    """Queued after the exchanges read up to `position` of the spool: once the pipeline has
    journaled what came before it, it reports `position` (the spool's checkpoint)."""

    position: Any


Record = RoundRecord | SideEntry

# What the addon captures: a model-API exchange, or the facts of a request to an endpoint no
# adapter knows (a side record: sizes, status and times, no content).
Captured = Exchange | SideRecord


def exchange_facts(item: Exchange, kind: str) -> SideRecord:
    """A side record of an exchange's facts, no content: for one that is not a round."""
    return {
        "uid": item.uid,
        "kind": kind,
        "method": item.method,
        "host": item.host,
        "path": item.path.split("?", 1)[0],  # the path only: a query string may carry a key
        "status": item.status,
        "request_at": item.request_at,
        "end_at": item.end_at,
        "request_bytes": len(item.request_body),
        "response_bytes": item.response_bytes,
    }


def failed_facts(item: Exchange | SideRecord, exc: BaseException) -> SideRecord:
    """The side record kept for an exchange that ingest could not normalize."""
    kind = f"ingest_error:{type(exc).__name__}"
    if isinstance(item, Exchange):
        return exchange_facts(item, kind)
    return {**item, "kind": kind}


def to_journal(rec: Record) -> dict[str, Any]:
    """The journal's line for a record: {"t": "round", "r": round} or {"t": "side", "s": side}."""
    if isinstance(rec, RoundRecord):
        return {"t": "round", "r": rec.round}
    return {"t": "side", "s": rec.side}


def from_journal(line: dict[str, Any]) -> Record:
    if line["t"] == "round":
        return RoundRecord(line["r"])
    return SideEntry(line["s"])
