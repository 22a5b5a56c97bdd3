"""What normalizing an exchange gives: a `RoundRecord` or a `SideEntry` (or, from a normalizer
process, a `Failed`), and their form in the journal (one JSON object a line, `to_journal`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracetap.storage.writer import SideRecord

__all__ = ["Failed", "Record", "RoundRecord", "SideEntry", "from_journal", "to_journal"]


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


Record = RoundRecord | SideEntry


def to_journal(rec: Record) -> dict[str, Any]:
    """The journal's line for a record: {"t": "round", "r": round} or {"t": "side", "s": side}."""
    if isinstance(rec, RoundRecord):
        return {"t": "round", "r": rec.round}
    return {"t": "side", "s": rec.side}


def from_journal(line: dict[str, Any]) -> Record:
    if line["t"] == "round":
        return RoundRecord(line["r"])
    return SideEntry(line["s"])
