"""The HTML report: headline findings first, then each analysis with a definition under every
metric, groups side by side, and titled, captioned charts; one self-contained file.

`report_html(analysis, figures, ...)` builds it from the results (not the terminal tables), so
every value is in its unit and a group comparison is one table per metric, columns = groups.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tracetap.analysis.glossary import DEFINITIONS, define, label
from tracetap.analysis.headline import SOURCE, headline
from tracetap.analysis.load import Dataset
from tracetap.analysis.registry import ANALYSES
from tracetap.analysis.report import figure_text
from tracetap.analysis.units import human, unit_of

__all__ = ["report_html"]


class Analysis(Protocol):
    """What the report reads of an analysis.run.Analysis (run imports this module)."""

    source: str
    dataset: Dataset
    results: dict[str, Any]


# column name -> [figure paths]; "all" first, then the groups
Figures = dict[str, dict[str, list[Path]]]

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;
 background:#fff}
main{max-width:1120px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:21px;margin:36px 0 6px;padding-top:8px;
 border-top:2px solid #e3e7ef}#headline h2{margin-top:12px}h3{font-size:16px;margin:22px 0 4px}
.lede{color:#4a5468;margin:0 0 12px}.question{color:#4a5468;margin:2px 0 12px}
dl.prov{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:10px 0;
 font-size:14px}dl.prov dt{color:#5d6880}dl.prov dd{margin:0;overflow-wrap:anywhere}
.meta{display:grid;grid-template-columns:3fr 2fr;gap:16px;margin:16px 0}
nav.toc,#provenance{background:#f6f8fb;border:1px solid #e3e7ef;border-radius:6px;
 padding:8px 16px;font-size:14px}nav.toc ol{margin:4px 0;padding-left:20px;columns:2}
table{border-collapse:collapse;margin:8px 0 18px;font-size:14px;max-width:100%}
.tables{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}
.tables>table.metrics,.tables>p{flex-basis:100%}
table.headline{width:100%}table.headline td.metric{width:34%;min-width:14em}
table.headline td.num{white-space:normal}table.headline td.num span{white-space:nowrap}
.scroll{overflow-x:auto}
caption{caption-side:top;text-align:left;padding:0 0 4px;color:#39425a}
caption b{color:#1d2330}caption .def{display:block;font-size:12.5px;color:#5d6880}
th,td{border-bottom:1px solid #e3e7ef;padding:4px 10px;vertical-align:top}
th{background:#f6f8fb;font-weight:600;text-align:left}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.num{white-space:normal}
th.grp{white-space:nowrap;max-width:12em;overflow:hidden;text-overflow:ellipsis}
td.text,th.text{max-width:22em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
td.metric{max-width:30em;min-width:12em}td.metric .def{font-size:12.5px;color:#5d6880;
 white-space:normal}
table.headline td.num{font-size:18px;font-weight:600}table.headline td.pub{color:#5d6880;
 font-weight:400;font-size:15px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:16px}
figure{margin:8px 0;border:1px solid #e3e7ef;border-radius:6px;padding:8px;background:#fff}
figure img{width:100%;height:auto;display:block}figcaption{font-size:13px;color:#39425a;
 margin-top:4px}.note{font-size:13px;color:#5d6880}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _anchor(name: str) -> str:
    return "s-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _unit(*keys: str) -> str:
    """The unit of a value named by `keys`, innermost first: the first that says one."""
    for k in keys:
        u = unit_of(k)
        if u != "num":
            return u
    return "num"


def _num(value: Any, unit: str) -> str:
    return f"<td class='num'>{_e(human(value, unit))}</td>"


def _metric_cell(key: str, parent: str = "") -> str:
    return (
        f"<td class='metric'><span class='name'>{_e(label(key))}</span>"
        f"<div class='def'>{_e(define(key, parent))}</div></td>"
    )


def _head(first: str, columns: Sequence[str]) -> str:
    cells = "".join(f"<th class='num grp' title='{_e(c)}'>{_e(c)}</th>" for c in columns)
    return f"<thead><tr><th>{_e(first)}</th>{cells}</tr></thead>"


def _caption(title: str, definition: str) -> str:
    return f"<caption><b>{_e(title)}</b><span class='def'>{_e(definition)}</span></caption>"


def _scalars(results: dict[str, Any], columns: list[str]) -> list[str]:
    """One row per scalar metric, one column per result (all, then groups)."""
    first = results[columns[0]]
    keys = [
        k
        for k, v in first.items()
        if not str(k).startswith("_") and not isinstance(v, (dict, list, str))
    ]
    if not keys:
        return []
    rows = []
    for k in keys:
        unit = unit_of(k)
        rows.append(
            "<tr class='metric-row'>"
            + _metric_cell(k)
            + "".join(_num(results[c].get(k), unit) for c in columns)
            + "</tr>"
        )
    head = _head("metric", _shown(columns))
    return [
        "<table class='metrics'>"
        + _caption("Summary", "The analysis's single-number metrics.")
        + head
        + "<tbody>"
        + "".join(rows)
        + "</tbody></table>"
    ]


def _shown(columns: list[str]) -> list[str]:
    return ["this trace" if c == "all" else c for c in columns]


def _flat_dict(key: str, results: dict[str, Any], columns: list[str]) -> str:
    """A dict of scalars (a summary, shares, counts by name): rows = its keys, columns =
    results."""
    inner: list[str] = []
    for c in columns:
        inner += [k for k in (results[c].get(key) or {}) if k not in inner]
    if unit_of(key) == "tok_s":  # a sum of per-round speeds means nothing
        inner = [k for k in inner if k != "total"]
    rows = "".join(
        (
            "<tr class='metric-row'>" + _metric_cell(k, key)
            if k in DEFINITIONS
            else f"<tr><td class='text' title='{_e(k)}'>{_e(k)}</td>"
        )
        + "".join(_num((results[c].get(key) or {}).get(k), _unit(k, key)) for c in columns)
        + "</tr>"
        for k in inner
    )
    return (
        "<table>"
        + _caption(label(key).capitalize(), define(key))
        + _head("metric", _shown(columns))
        + f"<tbody>{rows}</tbody></table>"
    )


def _records(key: str, results: dict[str, Any], columns: list[str]) -> list[str]:
    """A dict of records: one table (rows = records, columns = fields) for one result; with
    groups, one table per field whose columns are the groups."""
    recs = [results[c].get(key) or {} for c in columns]
    names: list[str] = []
    fields: list[str] = []
    for r in recs:
        names += [n for n in r if n not in names]
        for rec in r.values():
            if isinstance(rec, dict):
                fields += [f for f in rec if f not in fields and not isinstance(rec[f], dict)]
    if len(columns) == 1 and len(fields) > max(len(names), 6):
        # many fields: one metric row per field (with its definition), a column per record
        rec = recs[0]
        body = "".join(
            "<tr class='metric-row'>"
            + _metric_cell(f, key)
            + "".join(_num((rec.get(n) or {}).get(f), _unit(f, n, key)) for n in names)
            + "</tr>"
            for f in fields
        )
        return [
            "<table>"
            + _caption(label(key).capitalize(), define(key))
            + _head("metric", names)
            + f"<tbody>{body}</tbody></table>"
        ]
    if len(columns) == 1:
        rec = recs[0]
        body = "".join(
            f"<tr><td class='text' title='{_e(n)}'>{_e(n)}</td>"
            + "".join(_num((rec.get(n) or {}).get(f), _unit(f, n, key)) for f in fields)
            + "</tr>"
            for n in names
        )
        heads = "".join(
            f"<th class='num' title='{_e(define(f))}'>{_e(label(f))}</th>" for f in fields
        )
        defs = "; ".join(f"{label(f)}: {define(f, key)}" for f in fields)
        return [
            "<table>"
            + _caption(label(key).capitalize(), f"{define(key)} Columns — {defs}")
            + f"<thead><tr><th>{_e(label(key))}</th>{heads}</tr></thead>"
            + f"<tbody>{body}</tbody></table>"
        ]
    out = []
    for f in fields:
        body = "".join(
            f"<tr><td class='text' title='{_e(n)}'>{_e(n)}</td>"
            + "".join(_num((r.get(n) or {}).get(f), _unit(f, n, key)) for r in recs)
            + "</tr>"
            for n in names
        )
        out.append(
            "<table class='compare'>"
            + _caption(f"{label(key).capitalize()}: {label(f)}", f"{define(f, key)}")
            + _head(label(key), _shown(columns))
            + f"<tbody>{body}</tbody></table>"
        )
    return out


def _rows(key: str, results: dict[str, Any], columns: list[str]) -> list[str]:
    """A list of records (a grid, a sweep, events): a table per result, or with groups one
    table per field with the first field as the row label and the groups as columns."""
    lists = [results[c].get(key) or [] for c in columns]
    if not any(lists):
        return [
            f"<p class='note'><b>{_e(label(key).capitalize())}</b>: none. {_e(define(key))}</p>"
        ]
    fields: list[str] = []
    for rows in lists:
        for row in rows:
            fields += [f for f in row if f not in fields]
    if len(columns) == 1:
        text = {f for f in fields if all(isinstance(r.get(f), str) for r in lists[0])}
        head = "".join(
            f"<th class='{'text' if f in text else 'num'}' title='{_e(define(f))}'>"
            f"{_e(label(f))}</th>"
            for f in fields
        )
        body = "".join(
            "<tr>"
            + "".join(
                f"<td class='text' title='{_e(r.get(f))}'>{_e(r.get(f))}</td>"
                if f in text
                else _num(r.get(f), unit_of(f))
                for f in fields
            )
            + "</tr>"
            for r in lists[0]
        )
        defs = "; ".join(f"{label(f)}: {define(f, key)}" for f in fields)
        return [
            "<table>"
            + _caption(label(key).capitalize(), f"{define(key)} Columns — {defs}")
            + f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        ]
    keyf = fields[0]
    labels: list[str] = []
    for rows in lists:
        labels += [human(r.get(keyf), unit_of(keyf)) for r in rows]
    labels = list(dict.fromkeys(labels))
    out = []
    for f in fields[1:]:
        by = [{human(r.get(keyf), unit_of(keyf)): r.get(f) for r in rows} for rows in lists]
        body = "".join(
            f"<tr><td class='text'>{_e(lab)}</td>"
            + "".join(_num(b.get(lab), unit_of(f)) for b in by)
            + "</tr>"
            for lab in labels
        )
        out.append(
            "<table class='compare'>"
            + _caption(f"{label(key).capitalize()}: {label(f)}", define(f, key))
            + _head(label(keyf), _shown(columns))
            + f"<tbody>{body}</tbody></table>"
        )
    return out


def _notes(res: dict[str, Any]) -> list[str]:
    out = []
    for k, v in res.items():
        if isinstance(v, str) and not k.startswith("_"):
            out.append(f"<p class='note'><b>{_e(label(k))}</b>: {_e(v)}</p>")
        if k == "notes" and isinstance(v, list):
            out += [f"<p class='note'>{_e(n)}</p>" for n in v]
    return out


def _section_tables(entry: dict[str, Any], group_by: str | None) -> list[str]:
    results = {"all": entry["all"], **entry.get("groups", {})}
    columns = list(results)
    out = _notes(entry["all"])
    out += _scalars(results, columns)
    for k, v in entry["all"].items():
        if str(k).startswith("_") or k == "notes":
            continue
        if isinstance(v, dict):
            if all(not isinstance(x, dict) for x in v.values()):
                out.append(_flat_dict(k, results, columns))
            else:
                out += _records(k, results, columns)
        elif isinstance(v, list) and (not v or isinstance(v[0], dict)):
            out += _rows(k, results, columns)
    if entry.get("groups_shown"):
        out.append(
            f"<p class='note'>Groups by {_e(group_by)}: the {_e(entry['groups_shown'])} "
            "largest (by rounds) are shown.</p>"
        )
    return out


def _figure(path: Path, column: str, group_by: str | None) -> str:
    title, caption = figure_text(path)
    if column != "all":
        title = f"{title} — {group_by} {column}"
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (
        f"<figure><img alt='{_e(title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption><b>{_e(title)}.</b> {_e(caption)}</figcaption></figure>"
    )


def _headline_table(analysis: Analysis) -> str:
    items = headline(analysis.results)
    columns: list[str] = ["all"]
    for h in items:
        columns += [c for c in h.values if c not in columns]
    rows = []
    for h in items:
        cells = []
        for c in columns:
            v = h.values.get(c)
            parts = v if isinstance(v, tuple) else (v,)
            text = " / ".join(f"<span>{_e(human(x, h.unit))}</span>" for x in parts)
            cells.append(f"<td class='num'>{text}</td>")
        rows.append(
            "<tr class='metric-row'><td class='metric'>"
            f"<span class='name'>{_e(h.title)}</span><div class='def'>{_e(h.definition)}</div>"
            f"</td>{''.join(cells)}<td class='num pub'><span>{_e(h.published)}</span></td></tr>"
        )
    heads = "".join(f"<th class='num grp' title='{_e(c)}'>{_e(c)}</th>" for c in _shown(columns))
    return (
        "<div class='scroll'><table class='headline'>"
        + _caption(
            "Five numbers that matter for serving",
            "This trace's values beside TraceLab's published ones. A dash: that analysis was "
            "not run (--only) or the trace has no such data.",
        )
        + f"<thead><tr><th>finding</th>{heads}<th class='num'>TraceLab</th></tr></thead>"
        + f"<tbody>{''.join(rows)}</tbody></table></div>"
        + f"<p class='note'>TraceLab values: {_e(SOURCE)}.</p>"
    )


def report_html(
    analysis: Analysis,
    figures: Figures,
    *,
    version: str,
    generated: datetime | None = None,
    extra_sections: Sequence[tuple[str, str, str]] = (),
) -> str:
    """The whole report as one HTML page (figures inlined as data: URIs). `extra_sections`
    are (title, question, html body) added after the analyses (e.g. cost)."""
    ds = analysis.dataset
    generated = generated or datetime.now(tz=UTC)
    first = ds.scalar("SELECT min(first_event) FROM rounds")
    last = ds.scalar("SELECT max(last_event) FROM rounds")
    n_rounds = ds.scalar("SELECT count(*) FROM rounds")
    n_sessions = ds.scalar("SELECT count(DISTINCT session_id) FROM rounds")
    span = f"{human(first, 'date')} – {human(last, 'date')}"
    title = f"Agent workload report: {Path(analysis.source).name}"
    prov = [
        ("Input", f"{analysis.source} ({ds.kind})"),
        ("Filters", ds.filter.describe()),
        ("Grouped by", ds.group_by or "—"),
        ("Rounds", f"{human(n_rounds, 'count')} in {human(n_sessions, 'count')} sessions"),
        ("Date range", span),
        ("tracetap", version),
        ("Generated", generated.strftime("%Y-%m-%d %H:%M UTC")),
    ]
    toc = [("headline", "Headline findings"), ("provenance", "Provenance")]
    body: list[str] = []
    for name, entry in analysis.results.items():
        mod = ANALYSES[name]
        anchor = _anchor(name)
        toc.append((anchor, entry["title"]))
        question = (mod.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        parts = [
            f"<section id='{anchor}'><h2>{_e(entry['title'])}</h2>",
            f"<p class='question'>{_e(question)}</p>",
            "<div class='tables'>",
            *_section_tables(entry, ds.group_by),
            "</div>",
        ]
        figs = figures.get(name, {})
        if any(figs.values()):
            parts.append("<div class='figs'>")
            for column, paths in figs.items():
                parts += [_figure(p, column, ds.group_by) for p in paths]
            parts.append("</div>")
        parts.append("</section>")
        body += parts
    for sec_title, question, content in extra_sections:
        anchor = _anchor(sec_title)
        toc.append((anchor, sec_title))
        body += [
            f"<section id='{anchor}'><h2>{_e(sec_title)}</h2>",
            f"<p class='question'>{_e(question)}</p><div class='tables'>{content}</div></section>",
        ]
    toc_html = "".join(f"<li><a href='#{a}'>{_e(t)}</a></li>" for a, t in toc)
    prov_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in prov)
    return "\n".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width,initial-scale=1'>",
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
            f"<header><h1>{_e(title)}</h1>",
            f"<p class='lede'>{_e(human(n_rounds, 'count'))} LLM rounds in "
            f"{_e(human(n_sessions, 'count'))} sessions, {_e(span)}. Filters: "
            f"{_e(ds.filter.describe())}.</p></header>",
            "<section id='headline'><h2>Headline findings</h2>",
            _headline_table(analysis),
            "</section>",
            "<div class='meta'>",
            f"<nav class='toc' aria-label='Contents'><b>Contents</b><ol>{toc_html}</ol></nav>",
            f"<section id='provenance'><b>Provenance</b><dl class='prov'>{prov_html}</dl>"
            "</section></div>",
            *body,
            "</main></body></html>",
        ]
    )
