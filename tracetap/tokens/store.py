"""Writer extension: stores each round's token annotation in `round_tokens` (same transaction).

Only the block hashes that differ from the parent round are stored, plus a pointer to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session as OrmSession

from tracetap.model import Round
from tracetap.storage.models import RoundTokens
from tracetap.storage.writer import insert_rows

__all__ = ["TokenStore"]

_INFO_KEYS = (
    "normalized",
    "segment_source",
    "provider",
    "bounds",
    "parent_prompt_tokens",
    "parent_bounds",
    "gap_s",
    "elapsed_ms",
    "tokens_s",
)


def _offsets(value: Any) -> list[int] | None:
    """The breakpoint offsets as a list of ints (None when absent or not a list of ints)."""
    if not isinstance(value, list | tuple):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return None
    return [int(v) for v in value]


class TokenStore:
    """`WriterExtension` for `TokenEnricher` annotations."""

    def after_rounds(self, session: OrmSession, rounds: list[Round], pks: list[int]) -> None:
        if not pks:
            return
        if len(pks) != len(rounds):
            raise ValueError("after_rounds: one id per round, in order")
        rows: list[dict[str, Any]] = []
        for rnd, pk in zip(rounds, pks):  # the writer's ids, in the rounds' order
            t = rnd.annotations.get("tokens")
            if not t or "error" in t:
                continue
            rows.append(
                {
                    "round_pk": pk,
                    "tokenizer": t["tokenizer"],
                    "block_size": t["block_size"],
                    "prompt_tokens": t["prompt_tokens"],
                    "n_blocks": t["n_blocks"],
                    "parent_uid": t["parent_uid"],
                    "shared_blocks": t["shared_blocks"],
                    "new_hashes": bytes.fromhex(t["new_hashes"]),
                    "reuse_prev_tokens": t["reuse_prev_tokens"],
                    "reuse_any_blocks": t["reuse_any_blocks"],
                    "reuse_any_uid": t["reuse_any_uid"],
                    "segments": t["segments"],
                    "info": {k: t.get(k) for k in _INFO_KEYS},
                    # absent from enrichers that predate breakpoints: NULL, "not known"
                    "breakpoints": _offsets(t.get("breakpoints")),
                }
            )
        insert_rows(session, RoundTokens.__table__, rows)
