"""Prefix reuse per round from the stored block chains, beside the provider's cached tokens.

`cache` is `tracetap cache`'s data, `round_prefix_info` also feeds `show`; `rows_extras` exports.
`fidelity_rows` and `fidelity_summary` turn a `cache` report into the fidelity report (one
object per round, one summary): provider-reported cache reads and writes next to the measured
reusable prefix, with the named `REASONS` they differ (`explain`, one round's rule). Imported
rounds tracetap never tokenized are listed from their rows' `prefix_tokens` (`SOURCES` names
where each round's numbers come from).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tracetap.storage import models as m
from tracetap.storage.filters import Filter
from tracetap.storage.models import RoundTokens
from tracetap.storage.queries import find_session
from tracetap.tokens.enrich import HASH_BYTES

__all__ = [
    "CAUSES",
    "MIN_CACHEABLE_TOKENS",
    "REASONS",
    "SOURCES",
    "block_chains",
    "cache",
    "cache_totals",
    "explain",
    "fidelity_rows",
    "fidelity_summary",
    "min_cacheable",
    "provider_family",
    "provider_usage",
    "miss_cause",
    "miss_causes",
    "round_prefix_info",
    "rows_extras",
    "source_label",
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


# The shortest prompt prefix a provider caches: (provider family, model name substring, tokens),
# the first row whose family matches and whose substring the model name contains wins.
# Sources: Anthropic, https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching
# ("Cache limitations": 1,024 tokens for Opus- and Sonnet-class models, 2,048 for Haiku-class);
# OpenAI, https://platform.openai.com/docs/guides/prompt-caching (prompts of 1,024 tokens or more).
MIN_CACHEABLE_TOKENS: tuple[tuple[str, str, int], ...] = (
    ("anthropic", "haiku", 2048),
    ("anthropic", "", 1024),
    ("openai", "", 1024),
)

# How long a cache entry lives after its last use (a read refreshes it). Anthropic: 5 minutes,
# or 1 hour when the entry was written with `"ttl": "1h"` (the round before, or this one,
# reports 1h cache writes). OpenAI keeps its in-memory cache for 5-10 minutes of inactivity;
# the rule here takes the low end: a miss after more than 5 minutes is put down to expiry.
TTL_S = {"anthropic": 300.0, "anthropic-1h": 3600.0, "openai": 300.0}

# tracetap counts tokens with an offline tokenizer whose vocabulary is not the provider's. The
# measured prefix is first scaled by the round's own ratio (provider input tokens / tracetap's
# prompt tokens); what remains within 5% of the round's input tokens is put down to the two
# tokenizers splitting text differently ("tokenizer-estimate"), within 64 tokens (a hash block,
# and a last token that merges across the boundary) it is "agree".
TOKENIZER_TOLERANCE = 0.05
AGREE_TOKENS = 64

REASONS = {
    "agree": f"provider cache read and measured reuse agree within {AGREE_TOKENS} tokens",
    "tokenizer-estimate": "they differ by at most "
    f"{TOKENIZER_TOLERANCE:.0%} of the input: tracetap's offline tokenizer is not the provider's",
    "below-minimum": "the reusable prefix is shorter than the model's minimum cacheable length",
    "ttl-expiry": "the gap since the previous round exceeds the cache TTL: the entry expired",
    "breakpoint-placement": "reuse beyond the last cache breakpoint could not be served "
    "(the provider read up to a breakpoint, or the prompt had none)",
    "provider-miss": "the provider read less than the measured reusable prefix, "
    "and no rule above explains it",
    "provider-more": "the provider read more than any earlier prompt shares (measured)",
}


# Where a round's reuse figures come from (`measured_source`), in words for titles; an imported
# round's words depend on its session's origin (`import:<source>`).
SOURCES = {
    "round_tokens": "tracetap's tokenizer",
    "export": "tracetap's measurement kept in an imported export",
    "import:tracelab": "imported TraceLab prefix_tokens",
    "import:log:claude-code": "prefix_tokens of imported Claude Code logs",
    "import:log:codex": "prefix_tokens of imported Codex logs",
}


def source_label(measured_source: str, origin: str | None = None) -> str:
    """The words for a round's `measured_source` ("prefix_tokens": by its session's origin).

    Example: source_label("prefix_tokens", "import:tracelab") -> "imported TraceLab prefix_tokens"
    """
    if measured_source == "prefix_tokens":
        return SOURCES.get(origin or "", "imported prefix_tokens")
    return SOURCES.get(measured_source, measured_source)


def provider_family(provider: str | None, api: str | None = None) -> str:
    """ "anthropic" (Claude: cache reads and writes outside `input_tokens`) or "openai" (cached
    tokens inside the input count)."""
    if provider == "claude" or (api or "").startswith("anthropic"):
        return "anthropic"
    return "openai"


def min_cacheable(family: str, model: str | None) -> int:
    """The minimum cacheable prefix (tokens) of a model, from `MIN_CACHEABLE_TOKENS`."""
    name = (model or "").lower()
    for fam, part, tokens in MIN_CACHEABLE_TOKENS:
        if fam == family and part in name:
            return tokens
    return 1024


def provider_usage(r: m.Round) -> dict[str, Any]:
    """The round's usage under one counting rule for every provider.

    `input_tokens_total` counts every prompt token, cache reads and writes included (Anthropic
    reports `input_tokens` without them: the total is its sum with both; OpenAI's input count
    already holds its cached tokens). `input_tokens_uncached` is what was neither read from
    nor written to the cache (Anthropic's `input_tokens`; OpenAI: input minus cached).
    """
    family = provider_family(r.provider, r.api)
    c5, c1 = r.cache_creation_5m_tokens, r.cache_creation_1h_tokens
    total = r.input_tokens_total
    if family == "anthropic":
        read = (
            r.cache_read_input_tokens if r.cache_read_input_tokens is not None else r.cached_tokens
        )
        write = r.cache_creation_input_tokens
        if write is None and (c5 is not None or c1 is not None):
            write = (c5 or 0) + (c1 or 0)
        uncached = r.uncached_input_tokens
        if total is None and uncached is not None:
            total = uncached + (read or 0) + (write or 0)
        elif uncached is None and total is not None:
            uncached = total - (read or 0) - (write or 0)
    else:
        read, write = r.cached_tokens, None
        uncached = None if total is None else total - (read or 0)
    return {
        "provider_family": family,
        "input_tokens_total": total,
        "input_tokens_uncached": uncached,
        "cache_read_tokens": read,
        "cache_creation_tokens": write,
        "cache_creation_5m_tokens": c5,
        "cache_creation_1h_tokens": c1,
    }


def _servable(measured: int, positions: Sequence[int] | None) -> int | None:
    """The longest prefix ending at a breakpoint within the measured reuse (None: not known)."""
    if positions is None:
        return None
    return max((p for p in positions if p <= measured), default=0)


def explain(
    usage: dict[str, Any],
    *,
    model: str | None,
    prompt_tokens: int | None,
    reuse_prev_tokens: int | None,
    reuse_any_tokens: int | None = None,
    breakpoints: Sequence[int] | None = None,
    parent_breakpoints: Sequence[int] | None = None,
    gap_s: float | None = None,
    ttl_1h: bool = False,
) -> dict[str, Any]:
    """One round's provider cache read against tracetap's measured reusable prefix, and the
    named reason (`REASONS`) they differ; `reason` is None when either side is missing.

    `usage` is `provider_usage`'s; token positions (prompt, reuse, breakpoints) are tracetap's.
    The provider can serve a prefix only up to a position where an earlier request wrote an
    entry: the previous round's breakpoints (this round's when those are not known).

    Example: explain(provider_usage(r), model=r.model, prompt_tokens=9000, reuse_prev_tokens=8000)
    """
    family = usage["provider_family"]
    total, read = usage["input_tokens_total"], usage["cache_read_tokens"]
    measured = None
    if reuse_prev_tokens is not None:
        measured = max(reuse_prev_tokens, reuse_any_tokens or 0)
    minimum = min_cacheable(family, model)
    ttl = TTL_S["anthropic-1h" if family == "anthropic" and ttl_1h else family]
    positions = parent_breakpoints if parent_breakpoints is not None else breakpoints
    servable = None if measured is None else _servable(measured, positions)
    out: dict[str, Any] = {
        # the longest reusable prefix: from the previous round or any earlier one
        "measured_reusable_tokens": measured,
        "tokenizer_ratio": None,
        "measured_prefix_scaled": None,
        "servable_prefix_tokens": servable,
        # measured reuse the provider could not serve: it lies past the last breakpoint
        "beyond_breakpoint_tokens": None
        if measured is None or servable is None
        else measured - servable,
        "min_cacheable_tokens": minimum,
        "ttl_s": ttl,
        "difference_tokens": None,
        "agree": None,
        "reason": None,
    }
    if measured is None or not prompt_tokens or not total or read is None:
        return out
    ratio = total / prompt_tokens
    scaled = round(measured * ratio)
    diff = read - scaled
    tolerance = TOKENIZER_TOLERANCE * total
    out.update(
        tokenizer_ratio=round(ratio, 4), measured_prefix_scaled=scaled, difference_tokens=diff
    )
    if abs(diff) <= AGREE_TOKENS:
        reason = "agree"
    elif abs(diff) <= tolerance:
        reason = "tokenizer-estimate"
    elif diff > 0:
        reason = "provider-more"
    elif scaled < minimum:
        reason = "below-minimum"
    elif gap_s is not None and gap_s > ttl:
        reason = "ttl-expiry"
    elif servable is not None and abs(read - round(servable * ratio)) <= max(
        AGREE_TOKENS, tolerance
    ):
        reason = "breakpoint-placement"
    else:
        reason = "provider-miss"
    out.update(agree=reason in ("agree", "tokenizer-estimate"), reason=reason)
    return out


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


def _prefix_row(r: m.Round, t: RoundTokens) -> dict[str, Any]:
    cached, total = _reported(r)
    return {
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
        "breakpoints": t.breakpoints,
    }


def round_prefix_info(db: OrmSession, round_pks: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per round: estimated segments, measured reuse (previous / any round), reported cached,
    the provider's cache breakpoints (token offsets; None when not recorded)."""
    return {pk: _prefix_row(r, t) for pk, (r, t) in _token_rows(db, round_pks).items()}


def _prompt_from_segments(segments: dict[str, Any] | None) -> int | None:
    parts = [(segments or {}).get(k) for k in ("tools", "system", "history", "new_input")]
    return sum(p for p in parts if isinstance(p, int)) if any(parts) else None


def _parents(
    db: OrmSession, uids: set[str], known: dict[str, tuple[m.Round, RoundTokens]]
) -> dict[str, tuple[m.Round, RoundTokens]]:
    """Rounds (with their token rows) by uid: those already in `known`, the others queried."""
    missing = [u for u in uids if u not in known]
    found = dict(known)
    for i in range(0, len(missing), 500):
        q = (
            sa.select(m.Round, RoundTokens)
            .join(RoundTokens, RoundTokens.round_pk == m.Round.id)
            .where(m.Round.uid.in_(missing[i : i + 500]))
        )
        found.update({r.uid: (r, t) for r, t in db.execute(q).all()})
    return found


def _prefix_fields(r: m.Round) -> dict[str, Any]:
    """TraceLab's prefix figures of a round: `prefix_tokens` (the provider's cache read, as the
    TraceLab export and import store it), the newly appended rest and their hit ratio."""
    total, prefix = r.input_tokens_total, r.cached_tokens
    if total is None or prefix is None:
        return {"prefix_tokens": prefix, "newly_append_tokens": None, "prefix_hit_ratio": None}
    return {
        "prefix_tokens": prefix,
        "newly_append_tokens": total - prefix,
        "prefix_hit_ratio": round(prefix / total, 4) if total else None,
    }


def _fidelity(
    r: m.Round,
    t: RoundTokens | None,
    parent: tuple[m.Round, RoundTokens] | None,
    prev: m.Round | None,
) -> dict[str, Any] | None:
    """Provider usage, measured reuse and the reason for one round; None when nothing tells its
    reuse: no token row, no `tt_` fields of an imported export, and not an imported round with
    `prefix_tokens` (those are listed from that field: nothing to compare it with)."""
    usage = provider_usage(r)
    extra = r.extra or {}
    prompt: int | None
    any_reuse: int | None
    if t is not None:
        prompt, prev_reuse = t.prompt_tokens, t.reuse_prev_tokens
        any_reuse = t.reuse_any_blocks * t.block_size
        breakpoints, gap = t.breakpoints, (t.info or {}).get("gap_s")
        source = "round_tokens"
    elif isinstance(extra.get("tt_measured_prefix_tokens"), int):
        prompt = _prompt_from_segments(extra.get("tt_segments"))
        prev_reuse, any_reuse = extra["tt_measured_prefix_tokens"], None
        breakpoints, gap = extra.get("tt_breakpoints"), None
        source = "export"
    elif r.api == "import" and r.cached_tokens is not None and r.input_tokens_total is not None:
        prompt, prev_reuse, any_reuse, breakpoints, gap = None, None, None, None, None
        source = "prefix_tokens"
    else:
        return None
    if gap is None and prev is not None:
        gap = r.request_at - (prev.end_at or prev.request_at)
    parent_round = parent[0] if parent else prev
    ttl_1h = bool(r.cache_creation_1h_tokens) or bool(
        parent_round is not None and parent_round.cache_creation_1h_tokens
    )
    facts = explain(
        usage,
        model=r.model,
        prompt_tokens=prompt,
        reuse_prev_tokens=prev_reuse,
        reuse_any_tokens=any_reuse,
        breakpoints=breakpoints,
        parent_breakpoints=parent[1].breakpoints if parent else None,
        gap_s=gap,
        ttl_1h=ttl_1h,
    )
    return {
        "provider": r.provider,
        "model": r.model,
        **usage,
        "prompt_tokens_estimated": prompt,
        "measured_prefix_prev_tokens": prev_reuse,
        "measured_prefix_any_tokens": any_reuse,
        "measured_source": source,
        "breakpoints": breakpoints,
        "gap_s": gap,
        **_prefix_fields(r),
        **facts,
    }


def cache(
    db: OrmSession, session: str | None = None, flt: Filter | None = None
) -> list[dict[str, Any]]:
    """Per session (the one `session` names, by `provider:id`, id or unique prefix; else every
    one with a round `flt` lets through): each round whose reuse is known, with its index in the
    session and kind, and how many rounds have none. Only rounds `flt` lets through are listed;
    a session none of whose rounds pass is left out. Raises LookupError when `session` matches
    no session or several.

    Each round also holds the fidelity fields (`provider_usage`'s counts, the measured reusable
    prefix, breakpoints, gap, `explain`'s reason), TraceLab's `prefix_tokens`,
    `newly_append_tokens` and `prefix_hit_ratio`, and `source` (`source_label`'s words).
    Rounds without a token row whose import kept tracetap's `tt_measured_prefix_tokens` are
    listed from those (`measured_source` "export"); other imported rounds from their
    `prefix_tokens` alone (`measured_source` "prefix_tokens": not compared, `reason` None).

    Example: cache(db, "claude:4f1c2a")[0]["rounds"][1]["cause"]
    """
    conditions = flt.conditions() if flt is not None else []
    if session is not None:
        chosen = [find_session(db, session)]
    elif conditions:
        matching = (
            sa.select(m.Round.session_pk)
            .join(m.Session, m.Session.id == m.Round.session_pk)
            .where(*conditions)
        )
        chosen = list(
            db.scalars(
                sa.select(m.Session).where(m.Session.id.in_(matching)).order_by(m.Session.id)
            )
        )
    else:
        chosen = list(db.scalars(sa.select(m.Session).order_by(m.Session.id)))
    report: list[dict[str, Any]] = []
    for sess in chosen:
        rounds = list(
            db.scalars(
                sa.select(m.Round)
                .where(m.Round.session_pk == sess.id)
                .order_by(m.Round.request_at, m.Round.id)
            )
        )
        if conditions:
            passed = set(
                db.scalars(
                    sa.select(m.Round.id)
                    .join(m.Session, m.Session.id == m.Round.session_pk)
                    .where(m.Round.session_pk == sess.id, *conditions)
                )
            )
            if not passed:
                continue
        else:
            passed = {r.id for r in rounds}
        tokens = _token_rows(db, [r.id for r in rounds if r.id in passed])
        info = {pk: _prefix_row(r, t) for pk, (r, t) in tokens.items()}
        parents = _parents(
            db,
            {t.parent_uid for _, t in tokens.values() if t.parent_uid},
            {r.uid: (r, t) for r, t in tokens.values()},
        )
        rows = []
        prev: m.Round | None = None
        for i, r in enumerate(rounds):
            if r.id not in passed:
                prev = r
                continue
            t = tokens[r.id][1] if r.id in tokens else None
            parent = parents.get(t.parent_uid) if t is not None and t.parent_uid else None
            facts = _fidelity(r, t, parent, prev)
            prev = r
            if facts is None:
                continue
            base = info.get(r.id) or _export_row(r, facts)
            source = source_label(facts["measured_source"], sess.origin)
            rows.append(dict(base, round=i, kind=r.kind, source=source, **facts))
        report.append(
            {
                "session": f"{sess.provider}:{sess.agent_session_id}",
                "origin": sess.origin,
                "rounds": rows,
                "untokenized_rounds": len(passed) - len(rows),
            }
        )
    return report


def _export_row(r: m.Round, facts: dict[str, Any]) -> dict[str, Any]:
    """`round_prefix_info`'s fields for a round known only from an export's `tt_` fields or,
    imported without them, from its `prefix_tokens` (then tracetap measured nothing)."""
    cached, total = _reported(r)
    return {
        "tokenizer": None,
        "block_size": (r.extra or {}).get("tt_block_size"),
        "prompt_tokens": facts["prompt_tokens_estimated"] or 0,
        "prompt_source": "estimated" if facts["measured_source"] == "export" else None,
        "segments": (r.extra or {}).get("tt_segments") or {},
        "segment_source": None,
        "measured_prefix_tokens": facts["measured_prefix_prev_tokens"],
        "measured_prefix_any_tokens": facts["measured_prefix_prev_tokens"],
        "parent_uid": None,
        "reuse_any_uid": None,
        "reported_cached_tokens": cached,
        "reported_input_tokens": total,
        "reported_source": "provider",
        "prefix_break": None,
        "cause": None,
        "normalized": [],
        "gap_s": facts["gap_s"],
    }


def fidelity_rows(report: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One flat object per round of a `cache` report: `"type": "round"`, its session, index and
    kind, provider counts (`input_tokens_total` includes cache reads and writes,
    `input_tokens_uncached` excludes both), measured reuse (tracetap's tokens), breakpoints,
    gap, TTL, minimum and `reason`.

    Example: for row in fidelity_rows(cache(db)): print(json.dumps(row))
    """
    keys = (
        "provider",
        "model",
        "provider_family",
        "input_tokens_total",
        "input_tokens_uncached",
        "cache_read_tokens",
        "cache_creation_tokens",
        "cache_creation_5m_tokens",
        "cache_creation_1h_tokens",
        "tokenizer",
        "prompt_tokens_estimated",
        "measured_prefix_prev_tokens",
        "measured_prefix_any_tokens",
        "measured_prefix_tokens",
        "measured_reusable_tokens",
        "measured_source",
        "source",
        "prefix_tokens",
        "newly_append_tokens",
        "prefix_hit_ratio",
        "tokenizer_ratio",
        "measured_prefix_scaled",
        "breakpoints",
        "servable_prefix_tokens",
        "beyond_breakpoint_tokens",
        "min_cacheable_tokens",
        "gap_s",
        "ttl_s",
        "difference_tokens",
        "agree",
        "reason",
        "prefix_break",
        "cause",
    )
    for rep in report:
        for r in rep["rounds"]:
            yield {
                "type": "round",
                "session": rep["session"],
                "round": r["round"],
                "kind": r["kind"],
                **{k: r.get(k) for k in keys},
            }


def fidelity_summary(report: list[dict[str, Any]]) -> dict[str, Any]:
    """The fidelity report's summary over every round of a `cache` report (`"type": "summary"`):
    rounds, those compared (both sides known), the share that agree within the tokenizer
    tolerance, reasons by count, summed provider counts, TraceLab's token-weighted prefix hit
    ratio (`prefix_tokens` over the input of the rounds that have both), rounds by `source`,
    and the thresholds used.

    Example: fidelity_summary(cache(db))["agree_share"]
    """
    rounds = [r for rep in report for r in rep["rounds"]]
    compared = [r for r in rounds if r["reason"] is not None]
    agree = sum(1 for r in compared if r["agree"])

    def total(key: str) -> int:
        return sum(r.get(key) or 0 for r in rounds)

    known = [r for r in rounds if r.get("prefix_hit_ratio") is not None]
    prefix = sum(r["prefix_tokens"] for r in known)
    prefix_input = sum(r["input_tokens_total"] for r in known)

    return {
        "type": "summary",
        "sessions": len(report),
        "rounds": len(rounds),
        "unmeasured_rounds": sum(rep["untokenized_rounds"] for rep in report),
        "compared_rounds": len(compared),
        "agree_within_tolerance": agree,
        "agree_share": round(agree / len(compared), 4) if compared else None,
        "reasons": dict(Counter(r["reason"] for r in compared).most_common()),
        "input_tokens_total": total("input_tokens_total"),
        "input_tokens_uncached": total("input_tokens_uncached"),
        "cache_read_tokens": total("cache_read_tokens"),
        "cache_creation_5m_tokens": total("cache_creation_5m_tokens"),
        "cache_creation_1h_tokens": total("cache_creation_1h_tokens"),
        "prompt_tokens_estimated": total("prompt_tokens_estimated"),
        "measured_reusable_tokens": total("measured_reusable_tokens"),
        "prefix_tokens": prefix,
        "newly_append_tokens": total("newly_append_tokens"),
        "prefix_hit_ratio": round(prefix / prefix_input, 4) if prefix_input else None,
        "sources": dict(Counter(r["source"] for r in rounds).most_common()),
        "thresholds": {
            "agree_tokens": AGREE_TOKENS,
            "tokenizer_tolerance": TOKENIZER_TOLERANCE,
            "ttl_s": TTL_S,
            "min_cacheable_tokens": [list(row) for row in MIN_CACHEABLE_TOKENS],
        },
    }


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
        "measured_prefix_tokens": sum(r["measured_prefix_tokens"] or 0 for r in rounds),
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
            "tt_breakpoints": t.breakpoints,
        }
        for pk, (_, t) in rows.items()
    }
