"""Prefix reuse per round from the stored block chains, beside the provider's cached tokens.

`cache` is `tracetap cache`'s data, `round_prefix_info` also feeds `show`; `rows_extras` exports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tracetap.storage import models as m
from tracetap.storage.models import RoundTokens
from tracetap.storage.queries import find_session
from tracetap.tokens.enrich import HASH_BYTES

__all__ = [
    "CAUSES",
    "block_chains",
    "cache",
    "cache_totals",
    "miss_cause",
    "miss_causes",
    "round_prefix_info",
    "rows_extras",
]

CACHE_TTL_S = 300.0  # Anthropic's default (5 min) and OpenAI's typical idle eviction
MIN_CACHEABLE = 1024  # the smallest prompt prefix providers cache (most models)
AGREE = 0.05  # measured and reported reuse agree within 5% of the prompt

CAUSES = {
    "tools-changed": "tool definitions differ from the previous round",
    "system-changed": "system prompt differs from the previous round",
    "history-rewritten": "earlier messages changed (compaction, cleared thinking, edits)",
    "ttl-gap": f"more than {CACHE_TTL_S:.0f} s since the previous round: cache entry expired",
    "below-minimum": f"reusable prefix under {MIN_CACHEABLE} tokens is not cached",
    "shared-prefix": "reused a prefix of an earlier round of another thread or session",
    "provider-miss": "the prefix was reusable but the provider did not report it cached",
    "unexplained": "provider reports more cached than any earlier prompt shares",
}


def _break_segment(t: RoundTokens) -> str | None:
    """Where this round's prompt stopped matching its parent's ("append" if it did not)."""
    info = t.info or {}
    parent_bounds = info.get("parent_bounds")
    if t.parent_uid is None or not parent_bounds:
        return None
    reuse = t.reuse_prev_tokens
    if reuse >= info.get("parent_prompt_tokens", 0):
        return "append"
    if reuse < min(parent_bounds[0], (info.get("bounds") or parent_bounds)[0]):
        return "tools-changed"
    if reuse < min(parent_bounds[1], (info.get("bounds") or parent_bounds)[1]):
        return "system-changed"
    return "history-rewritten"


def miss_cause(
    t: RoundTokens, reported_cached: int | None, reported_input: int | None
) -> str | None:
    """Why measured prefix reuse and the provider's cached tokens disagree (None: they agree)."""
    if not reported_input or reported_cached is None or not t.prompt_tokens:
        return None
    measured = t.reuse_prev_tokens / t.prompt_tokens
    reported = reported_cached / reported_input
    any_reuse = t.reuse_any_blocks * t.block_size / t.prompt_tokens
    brk = _break_segment(t)
    if abs(measured - reported) <= AGREE:
        return None
    if reported < measured:
        gap = (t.info or {}).get("gap_s")
        if gap is not None and gap > CACHE_TTL_S:
            return "ttl-gap"
        if t.reuse_prev_tokens < MIN_CACHEABLE:
            return "below-minimum"
        return "provider-miss"
    if any_reuse >= reported - AGREE and t.reuse_any_blocks > 0:
        return "shared-prefix"
    if brk in ("tools-changed", "system-changed", "history-rewritten"):
        return brk
    return "unexplained"


def _reported(r: m.Round) -> tuple[int | None, int | None]:
    cached = r.cached_tokens if r.cached_tokens is not None else r.cache_read_input_tokens
    return cached, r.input_tokens_total


def _token_rows(db: OrmSession, round_pks: Sequence[int]) -> dict[int, tuple[m.Round, RoundTokens]]:
    out: dict[int, tuple[m.Round, RoundTokens]] = {}
    pks = list(round_pks)
    for i in range(0, len(pks), 500):
        q = (
            sa.select(m.Round, RoundTokens)
            .join(RoundTokens, RoundTokens.round_pk == m.Round.id)
            .where(m.Round.id.in_(pks[i : i + 500]))
        )
        for r, t in db.execute(q).all():
            out[r.id] = (r, t)
    return out


def round_prefix_info(db: OrmSession, round_pks: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per round: estimated segments, measured reuse (previous / any round), reported cached."""
    out: dict[int, dict[str, Any]] = {}
    for pk, (r, t) in _token_rows(db, round_pks).items():
        cached, total = _reported(r)
        out[pk] = {
            "tokenizer": t.tokenizer,
            "block_size": t.block_size,
            "prompt_tokens": t.prompt_tokens,
            "prompt_source": "estimated",
            "segments": t.segments,
            "segment_source": (t.info or {}).get("segment_source"),
            "measured_prefix_tokens": t.reuse_prev_tokens,
            "measured_prefix_any_tokens": t.reuse_any_blocks * t.block_size,
            "parent_uid": t.parent_uid,
            "reuse_any_uid": t.reuse_any_uid,
            "reported_cached_tokens": cached,
            "reported_input_tokens": total,
            "reported_source": "provider",
            "prefix_break": _break_segment(t),
            "cause": miss_cause(t, cached, total),
            "normalized": (t.info or {}).get("normalized") or [],
            "gap_s": (t.info or {}).get("gap_s"),
        }
    return out


def cache(db: OrmSession, session: str | None = None) -> list[dict[str, Any]]:
    """Per session (the one `session` names, by `provider:id`, id or unique prefix; every one
    when None): each tokenized round's prefix info with its index and kind, and how many rounds
    have no token data. Raises LookupError when `session` matches no session or several.

    Example: cache(db, "claude:4f1c2a")[0]["rounds"][1]["cause"]
    """
    if session is None:
        chosen = list(db.scalars(sa.select(m.Session).order_by(m.Session.id)))
    else:
        chosen = [find_session(db, session)]
    report: list[dict[str, Any]] = []
    for sess in chosen:
        rounds = list(
            db.scalars(
                sa.select(m.Round)
                .where(m.Round.session_pk == sess.id)
                .order_by(m.Round.request_at, m.Round.id)
            )
        )
        info = round_prefix_info(db, [r.id for r in rounds])
        rows = [
            dict(info[r.id], round=i, kind=r.kind) for i, r in enumerate(rounds) if r.id in info
        ]
        report.append(
            {
                "session": f"{sess.provider}:{sess.agent_session_id}",
                "rounds": rows,
                "untokenized_rounds": len(rounds) - len(rows),
            }
        )
    return report


def miss_causes(rounds: Iterable[dict[str, Any]]) -> Counter[str]:
    """How often each miss cause occurs among `cache` rounds, counted in round order.

    Example: miss_causes(cache(db, "claude:4f1c2a")[0]["rounds"]).most_common()
    """
    return Counter(r["cause"] for r in rounds if r["cause"])


def cache_totals(rounds: list[dict[str, Any]]) -> dict[str, int]:
    """One session's `cache` rounds summed: estimated prompt tokens, measured reuse, and the
    provider's reported cached and input tokens.

    Example: cache_totals(cache(db, "claude:4f1c2a")[0]["rounds"])["measured_prefix_tokens"]
    """
    return {
        "rounds": len(rounds),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rounds),
        "measured_prefix_tokens": sum(r["measured_prefix_tokens"] for r in rounds),
        "reported_cached_tokens": sum(r["reported_cached_tokens"] or 0 for r in rounds),
        "reported_input_tokens": sum(r["reported_input_tokens"] or 0 for r in rounds),
    }


def block_chains(db: OrmSession, round_pks: Sequence[int]) -> dict[int, list[bytes]]:
    """Full block hash chains, rebuilt from each round's new hashes and its parents'."""
    rows = _token_rows(db, round_pks)
    by_uid: dict[str, RoundTokens] = {r.uid: t for r, t in rows.values()}
    missing = {t.parent_uid for _, t in rows.values() if t.parent_uid} - set(by_uid)
    while missing:
        q = (
            sa.select(m.Round.uid, RoundTokens)
            .join(RoundTokens, RoundTokens.round_pk == m.Round.id)
            .where(m.Round.uid.in_(list(missing)))
        )
        found = {uid: t for uid, t in db.execute(q).all()}
        by_uid.update(found)
        missing = {t.parent_uid for t in found.values() if t.parent_uid} - set(by_uid)
    memo: dict[str, list[bytes]] = {}

    def chain(uid: str) -> list[bytes]:
        stack, result = [], None
        cur: str | None = uid
        while cur is not None and cur not in memo:
            stack.append(cur)
            t = by_uid.get(cur)
            cur = t.parent_uid if t else None
        result = memo.get(cur, []) if cur else []
        for u in reversed(stack):
            t = by_uid.get(u)
            if t is None:
                memo[u] = []
                continue
            new = [
                t.new_hashes[i : i + HASH_BYTES] for i in range(0, len(t.new_hashes), HASH_BYTES)
            ]
            memo[u] = result[: t.shared_blocks] + new
            result = memo[u]
        return memo[uid]

    return {pk: chain(r.uid) for pk, (r, _) in rows.items()}


def rows_extras(db: OrmSession, round_pks: Sequence[int]) -> dict[int, dict[str, Any]]:
    """TraceLab row extras: measured prefix tokens, segments, block hashes (hex), block size."""
    rows = _token_rows(db, round_pks)
    chains = block_chains(db, list(rows))
    return {
        pk: {
            "tt_measured_prefix_tokens": t.reuse_prev_tokens,
            "tt_segments": t.segments,
            "tt_block_hashes": [h.hex() for h in chains.get(pk, [])],
            "tt_block_size": t.block_size,
        }
        for pk, (_, t) in rows.items()
    }
