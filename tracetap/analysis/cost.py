"""Cost: what did the trace's rounds cost at list prices, per model and per project?

Each round is priced by tracetap.pricing (uncached input, cache reads, 5-minute and 1-hour cache
writes, output at the dated price table's rates); rounds of unknown models are counted apart.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from tracetap.analysis.units import human
from tracetap.pricing import CostTotal, load_table, usage_of

if TYPE_CHECKING:
    from tracetap.analysis.run import Analysis

__all__ = ["compute", "cost_section"]

_COLUMNS = (
    "model",
    "project",
    "grp",
    "trig",
    "input_tokens_total",
    "prefix_tokens",
    "output_tokens",
    "claude_uncached_input_tokens",
    "claude_cache_creation_input_tokens",
    "claude_cache_read_input_tokens",
    "tt_cache_creation_5m_tokens",
    "tt_cache_creation_1h_tokens",
)


_TOP = 15  # rows of a cost table; the rest are summed in one "others" row


def _usd(v: float | None) -> str:
    if v is None:
        return "–"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    return f"{v * 100:.2g}¢" if abs(v) < 0.001 else f"{v * 100:.1f}¢"


def compute(analysis: Analysis) -> dict[str, Any]:
    """Totals and per-model / per-project (and per-group) costs of the loaded rounds."""
    table = load_table()
    cur = analysis.dataset.con.execute(f"SELECT {', '.join(_COLUMNS)} FROM rounds")
    by: dict[str, dict[str, CostTotal]] = {"model": {}, "project": {}, "group": {}}
    total = CostTotal()
    saving = 0.0
    user_requests = 0
    for values in cur.fetchall():
        row = dict(zip(_COLUMNS, values))
        usage = usage_of(row)
        usd = table.cost(row["model"], usage)
        total.add(usd)
        user_requests += row["trig"] == "user_message"
        for key, name in (("model", row["model"]), ("project", row["project"])):
            by[key].setdefault(str(name or "unknown"), CostTotal()).add(usd)
        by["group"].setdefault(str(row["grp"]), CostTotal()).add(usd)
        price = table.lookup(row["model"])
        parts = usage.parts()
        if usd is not None and price is not None and parts is not None:
            r = price.rates_for(sum(parts[:4]))
            read_price = r.cache_read if r.cache_read is not None else r.input
            saving += parts[1] * (r.input - read_price) / 1_000_000
    sources = "; ".join(
        f"{p}: {s.get('source', '?').split('://')[-1]} ({s.get('taken', '?')})"
        for p, s in table.sources.items()
    )
    return {
        "total": total,
        "saving": saving if total.priced else None,
        "user_requests": user_requests,
        "by": by,
        "sources": sources,
    }


def _table(title: str, definition: str, key: str, rows: dict[str, CostTotal]) -> str:
    e = html.escape
    grand = sum(c.usd for c in rows.values()) or None
    ordered = sorted(rows.items(), key=lambda kv: -kv[1].usd)
    if len(ordered) > _TOP:
        rest = CostTotal()
        for _, c in ordered[_TOP:]:
            rest.usd += c.usd
            rest.rounds += c.rounds
            rest.unpriced += c.unpriced
        ordered = [*ordered[:_TOP], (f"{len(ordered) - _TOP:,} others", rest)]
    body = "".join(
        f"<tr><td class='text' title='{e(name)}'>{e(name)}</td>"
        f"<td class='num'>{e(_usd(c.usd) if c.priced else '–')}</td>"
        f"<td class='num'>{e(human(c.usd / grand if grand and c.priced else None, 'pct'))}</td>"
        f"<td class='num'>{e(human(c.rounds, 'count'))}</td>"
        f"<td class='num'>{e(human(c.unpriced, 'count'))}</td></tr>"
        for name, c in ordered
    )
    return (
        f"<table class='cost'><caption><b>{e(title)}</b><span class='def'>{e(definition)}"
        "</span></caption><thead><tr><th>" + e(key) + "</th><th class='num'>cost</th>"
        "<th class='num'>share of cost</th><th class='num'>rounds</th>"
        "<th class='num'>unpriced rounds</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def cost_section(analysis: Analysis) -> tuple[str, str, str] | None:
    """("Cost", question, html) for the report; None when no round has a price."""
    data = compute(analysis)
    total: CostTotal = data["total"]
    if not total.priced:
        return None
    e = html.escape
    priced = total.rounds - total.unpriced
    per_request = total.usd / data["user_requests"] if data["user_requests"] else None
    rows = [
        ("Total cost", _usd(total.usd), "Sum of the priced rounds' list-price cost."),
        (
            "Cost per user request",
            _usd(per_request),
            "Total cost divided by the rounds started by a user message.",
        ),
        (
            "Cost per round",
            _usd(total.usd / priced),
            "Mean list-price cost of a priced round.",
        ),
        (
            "Saved by cache reads",
            _usd(data["saving"]),
            "What the cache reads would have cost at the uncached input price, less what they "
            "cost.",
        ),
        (
            "Priced rounds",
            human(priced / total.rounds, "pct"),
            "Share of rounds whose model the price table knows.",
        ),
    ]
    summary = "".join(
        f"<tr class='metric-row'><td class='metric'><span class='name'>{e(k)}</span>"
        f"<div class='def'>{e(d)}</div></td><td class='num'>{e(v)}</td></tr>"
        for k, v, d in rows
    )
    parts = [
        "<table class='metrics'><caption><b>Summary</b><span class='def'>List prices, "
        "standard tier; a round is billed for its uncached input, cache reads, 5-minute and "
        "1-hour cache writes and output.</span></caption><thead><tr><th>metric</th>"
        f"<th class='num'>this trace</th></tr></thead><tbody>{summary}</tbody></table>",
        _table(
            "Cost by model", "List-price cost of each model's rounds.", "model", data["by"]["model"]
        ),
        _table(
            "Cost by project",
            "List-price cost of each project's rounds.",
            "project",
            data["by"]["project"],
        ),
    ]
    group_by = analysis.dataset.group_by
    if group_by and group_by not in ("model", "project"):
        parts.append(
            _table(
                f"Cost by {group_by}",
                f"List-price cost of each {group_by}'s rounds.",
                group_by,
                data["by"]["group"],
            )
        )
    parts.append(f"<p class='note'>Prices: {e(data['sources'])}.</p>")
    question = (__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return "Cost", question, "".join(parts)
