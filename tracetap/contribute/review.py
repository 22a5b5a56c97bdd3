"""The privacy review of a dataset: what each field shares, what the recording held, what the
second scan still finds, and what remains identifying (k-anonymity checks).

`Review.markdown()` is REVIEW.md and the card's privacy section; `Review.rich()` the terminal's.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from tracetap.contribute.collect import Census
from tracetap.contribute.scan import Hit
from tracetap.contribute.shape import KEPT_EXTRAS
from tracetap.tracelab import parse_ts

__all__ = ["CONTENT_LEVEL", "FIELDS", "Review", "RowStats"]

CONTENT_LEVEL = "none"  # no text of any kind: counts, sizes, timings, token numbers
_TYPE_NAMES = {
    "secret": "secrets",
    "email": "e-mail addresses",
    "ip": "IP addresses",
    "phone": "phone numbers",
    "home": "home-path user names",
    "host": "internal host names",
    "account": "account ids (metadata.user_id)",
}

# (field, treatment, what is shared): the per-field table; timestamps are filled per options.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("prompts, tool results, replies, system prompts", "dropped", "only their sizes in chars"),
    ("tools[].input (tool arguments)", "dropped", "only input_chars"),
    ("headers, API keys, metadata.user_id", "dropped", "nothing"),
    ("working directory (cwd), home, host, any *_path", "dropped", "nothing"),
    ("project", "pseudonymized", "project_ + keyed hash of the project name"),
    ("session_id, round_id, turn_id, trace_key", "pseudonymized", "keyed, same shape as the id"),
    ("tool_call_id", "pseudonymized", "keyed, same shape; calls still pair with results"),
    ("tt_contributor", "pseudonymized", "contributor_ + keyed hash of the contributor's name"),
    ("provider, model, store", "kept", "as recorded"),
    ("token counts (input, prefix, append, output, cache)", "kept", "as the API reported"),
    ("event types, sources, char counts, is_error", "kept", "as recorded"),
    ("tool latencies (wall, internal)", "kept", "whole milliseconds"),
    ("tracetap timing and status (tt_*)", "kept", ", ".join(sorted(KEPT_EXTRAS))),
    ("other tt_* fields (round uid, block hashes, ...)", "dropped", "nothing"),
)


@dataclass
class RowStats:
    """Counts over the shared rows, for the k-anonymity checks and the manifest."""

    rounds: int = 0
    tool_calls: int = 0
    timing_events: int = 0
    sessions: set[str] = field(default_factory=set)
    project_sessions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    tool_sessions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    model_sessions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    contributors: Counter[str] = field(default_factory=Counter)
    stores: Counter[str] = field(default_factory=Counter)  # tracetap (the wire) or a log source
    sub_second: int = 0  # timestamps with a fraction of a second
    stamps: int = 0
    first: float | None = None
    last: float | None = None

    def add(self, row: dict[str, Any]) -> None:
        sid = str(row.get("session_id"))
        self.rounds += 1
        self.sessions.add(sid)
        self.project_sessions[str(row.get("project") or "unknown")].add(sid)
        self.model_sessions[str(row.get("model") or "unknown")].add(sid)
        self.contributors[str(row.get("tt_contributor") or "unknown")] += 1
        self.stores[str(row.get("store") or "unknown")] += 1
        stamps = [e.get("timestamp") for e in row.get("timing_events") or []]
        for tool in row.get("tools") or []:
            self.tool_calls += 1
            self.tool_sessions[str(tool.get("tool_name"))].add(sid)
            stamps += [tool.get("emitted_at"), tool.get("result_at")]
        self.timing_events += len(row.get("timing_events") or [])
        for text in stamps:
            t = parse_ts(text) if isinstance(text, str) else None
            if t is None:
                continue
            self.stamps += 1
            if t % 1:
                self.sub_second += 1
            self.first = t if self.first is None else min(self.first, t)
            self.last = t if self.last is None else max(self.last, t)

    def counts(self) -> dict[str, int]:
        return {
            "rounds": self.rounds,
            "tool_calls": self.tool_calls,
            "timing_events": self.timing_events,
            "sessions": len(self.sessions),
            "projects": len(self.project_sessions),
            "contributors": len(self.contributors),
        }


@dataclass
class Review:
    """Everything a reviewer signs off; built by `contribute` and `merge`."""

    stats: RowStats
    census: Census
    hits: list[Hit]
    k: int
    time_granularity: str | None
    shift_clock: bool
    hidden_tools: int
    filters: str
    excluded: dict[str, list[str]] = field(default_factory=dict)  # pseudonym -> reason kinds
    sources: list[str] = field(default_factory=list)  # merge: the datasets merged
    duplicates: int = 0

    # -- k-anonymity ------------------------------------------------------------------------
    def _rare(self, groups: dict[str, set[str]]) -> dict[str, int]:
        return {name: len(s) for name, s in sorted(groups.items()) if len(s) < self.k}

    def identifying(self) -> list[str]:
        """What remains identifying, one sentence each."""
        s, out = self.stats, []
        per_project = [len(v) for v in s.project_sessions.values()]
        small = self._rare(s.project_sessions)
        if per_project:
            out.append(
                f"{len(per_project)} distinct project(s) (working directories), "
                f"{min(per_project)}–{max(per_project)} sessions each "
                f"(median {statistics.median(per_project):g}); {len(small)} with fewer than "
                f"{self.k} sessions: their pseudonym singles out one small piece of work."
            )
        rare_tools = self._rare(s.tool_sessions)
        if rare_tools:
            names = ", ".join(f"`{n}` ({c})" for n, c in list(rare_tools.items())[:20])
            more = f" and {len(rare_tools) - 20} more" if len(rare_tools) > 20 else ""
            out.append(
                f"{len(rare_tools)} tool name(s) used in fewer than {self.k} sessions "
                f"(custom or MCP tools can name a team or product): {names}{more}. "
                "`--hide-rare-tools` replaces them by keyed pseudonyms."
            )
        rare_models = self._rare(s.model_sessions)
        if rare_models:
            names = ", ".join(f"`{n}` ({c})" for n, c in list(rare_models.items())[:10])
            out.append(
                f"{len(rare_models)} model(s) used in fewer than {self.k} sessions: {names}."
            )
        if self.time_granularity is None and s.sub_second:
            out.append(
                f"{s.sub_second:,} of {s.stamps:,} timestamps are precise to the millisecond"
                + ("" if self.shift_clock else " and on the real clock")
                + ": a session can be linked to other records of the same moment. "
                "`--time-granularity 1h` coarsens them"
                + ("." if self.shift_clock else ", `--shift-clock` moves each session's clock.")
            )
        elif not self.shift_clock:
            out.append(
                "Timestamps are on the real clock (coarsened to "
                f"{self.time_granularity}); `--shift-clock` moves each session's clock."
            )
        if len(s.contributors) == 1 and len(s.sessions) < self.k:
            out.append(f"One contributor with fewer than {self.k} sessions.")
        return out

    # -- fields -----------------------------------------------------------------------------
    def fields(self) -> list[tuple[str, str, str]]:
        if self.time_granularity and self.shift_clock:
            times = (
                "shifted, coarsened",
                f"each session's clock moved back (keyed), to {self.time_granularity}",
            )
        elif self.time_granularity:
            times = ("coarsened", f"rounded down to {self.time_granularity}")
        elif self.shift_clock:
            times = ("shifted", "each session's clock moved back by a keyed offset (up to a year)")
        else:
            times = ("kept", "millisecond UTC")
        tools = (
            (
                "pseudonymized",
                f"{self.hidden_tools} rare name(s) as tool_ + keyed hash, others kept",
            )
            if self.hidden_tools
            else ("kept", "as the agent named them")
        )
        return [
            *FIELDS[:8],
            ("timestamps (events, tool emitted/result)", *times),
            ("tool_name", *tools),
            *FIELDS[8:],
        ]

    # -- verdict ----------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return not self.hits

    def verdict(self) -> str:
        if self.ready:
            return "No residual hits: the second scan found nothing in the output."
        files = len({h.file for h in self.hits})
        return (
            f"{len(self.hits)} residual hit(s) in {files} file(s): fix them (exclude the "
            "project, hide rare tools) or pass --yes to share anyway."
        )

    # -- rendering --------------------------------------------------------------------------
    def _secret_rows(self) -> list[tuple[str, int, int]]:
        return [
            (label, n, self.census.occurrences[t, label])
            for (t, label), n in sorted(self.census.placeholders.items())
            if t == "secret"
        ]

    def _type_totals(self) -> list[tuple[str, int, int]]:
        """(type, distinct, occurrences) for every type, found or not (a 0 says none)."""
        totals: Counter[str] = Counter(dict.fromkeys(_TYPE_NAMES, 0))
        seen: Counter[str] = Counter()
        for (t, label), n in self.census.placeholders.items():
            totals[t] += n
            seen[t] += self.census.occurrences[t, label]
        return [(_TYPE_NAMES.get(t, t), n, seen[t]) for t, n in totals.items()]

    def markdown(self, *, heading: int = 1) -> str:
        h = "#" * heading
        s = self.stats.counts()
        lines = [
            f"{h} Privacy review",
            "",
            f"- Content level: **{CONTENT_LEVEL}** — no text of any kind is shared: sizes, "
            "timings, token counts and pseudonymous ids only.",
            f"- Selection: {self.filters}.",
            f"- Shared: {s['rounds']:,} rounds, {s['tool_calls']:,} tool calls, "
            f"{s['timing_events']:,} timing events in {s['sessions']:,} sessions, "
            f"{s['projects']:,} projects, {s['contributors']:,} contributor(s).",
        ]
        if self.sources:
            lines.append(
                f"- Merged from {len(self.sources)} datasets; {self.duplicates:,} "
                "duplicate round(s) dropped by content hash."
            )
        if self.excluded:
            lines.append(f"- Excluded by the contributor: {len(self.excluded)} project(s):")
            lines += [f"  - `{p}`: {', '.join(r)}" for p, r in sorted(self.excluded.items())]
        lines += ["", f"**{self.verdict()}**", "", f"{h}# What each field shares", ""]
        lines += ["| field | treatment | shared |", "|---|---|---|"]
        lines += [f"| {f} | {t} | {d} |" for f, t, d in self.fields()]
        lines += [
            "",
            f"{h}# What the recording held (placeholders left by the scrubber)",
            "",
            f"Recorded text scanned: {self.census.texts:,} distinct texts of rounds recorded "
            f"with content policy {self._policies()}. None of this text is in the dataset.",
            "",
        ]
        lines += ["| type | distinct | occurrences |", "|---|---|---|"]
        lines += [f"| {t} | {n:,} | {o:,} |" for t, n, o in self._type_totals()]
        secrets = self._secret_rows()
        if secrets:
            lines += ["", "| secret rule | distinct | occurrences |", "|---|---|---|"]
            lines += [f"| {r} | {n:,} | {o:,} |" for r, n, o in secrets]
        if self.census.unscrubbed:
            lines += [
                "",
                "The detector still finds these in the recorded text (recorded with content "
                "policy full, or missed at ingest); they are not shared, as no text is:",
                "",
                "| type | rule | distinct |",
                "|---|---|---|",
            ]
            lines += [
                f"| {_TYPE_NAMES.get(t, t)} | {r if t == 'secret' else ''} | {n:,} |"
                for (t, r), n in sorted(self.census.unscrubbed.items())
            ]
        lines += ["", f"{h}# Second scan of the output", ""]
        lines.append(
            "Every string value of every file (JSONL rows, and every Parquet column read back "
            "with its pages decompressed) went through the secret and PII detector again, "
            "TraceLab's privacy gate rules (no path-like keys, no tool inputs, no paths, URLs, "
            "addresses or free text, ids as pseudonyms) and a search for the recorded session "
            "ids, project names and working directories."
        )
        lines.append("")
        if self.hits:
            lines += ["| file | row | field | rule | value |", "|---|---|---|---|---|"]
            lines += [
                f"| {x.file} | {x.row} | {x.field} | {x.rule} | {x.hint} |" for x in self.hits
            ]
        else:
            lines.append("No residual hits.")
        lines += ["", f"{h}# What remains identifying (k = {self.k})", ""]
        lines += [f"- {sentence}" for sentence in self.identifying()] or ["- Nothing flagged."]
        return "\n".join(lines) + "\n"

    def _policies(self) -> str:
        return ", ".join(f"{p} ({n:,} rounds)" for p, n in self.census.policies.items()) or "—"

    def rich(self) -> RenderableType:
        """The review for a terminal: the same content as the markdown, with tables."""
        fields = Table(title="What each field shares", title_justify="left")
        for col in ("field", "treatment", "shared"):
            fields.add_column(col, overflow="fold")
        for row in self.fields():
            fields.add_row(*row)
        held = Table(title="Placeholders in the recording (not shared)", title_justify="left")
        rules = Table(title="Secrets by rule", title_justify="left")
        for table, first in ((held, "type"), (rules, "secret rule")):
            table.add_column(first)
            table.add_column("distinct", justify="right")
            table.add_column("occurrences", justify="right")
        for t, n, o in self._type_totals():
            held.add_row(t, f"{n:,}", f"{o:,}")
        for r, n, o in self._secret_rows():
            rules.add_row(r, f"{n:,}", f"{o:,}")
        hits = Table(title=f"Residual hits ({len(self.hits)})", title_justify="left")
        for col in ("file", "row", "field", "rule", "value"):
            hits.add_column(col, overflow="fold")
        for x in self.hits:
            hits.add_row(x.file, str(x.row), x.field, x.rule, x.hint)
        s = self.stats.counts()
        head = Markdown(
            f"**Privacy review** — content level **{CONTENT_LEVEL}**, {self.filters}: "
            f"{s['rounds']:,} rounds, {s['sessions']:,} sessions, {s['projects']:,} projects"
            + (f"; {len(self.excluded)} project(s) excluded" if self.excluded else "")
        )
        ident = Markdown("\n".join(f"- {x}" for x in self.identifying()) or "- Nothing flagged.")
        verdict = Markdown(f"**{self.verdict()}**")
        gap = Text("")
        parts: list[RenderableType] = [head, gap, fields, gap, held]
        if self.census.unscrubbed:
            found = sum(self.census.unscrubbed.values())
            parts.append(
                Text(
                    f"The detector still finds {found:,} value(s) in recorded text "
                    "(not shared: no text is); see REVIEW.md."
                )
            )
        if rules.row_count:
            parts += [gap, rules]
        if self.hits:
            parts += [gap, hits]
        parts += [gap, Markdown("**What remains identifying**"), ident, gap, verdict]
        return Group(*parts)
