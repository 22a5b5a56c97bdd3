"""A dataset folder: TraceLab JSONL, Parquet shards of the three TraceLab tables, the dataset
card (README.md, Hugging Face format), REVIEW.md and manifest.json with every file's SHA-256.

Layout: tracelab/rounds.jsonl, data/{rounds,tool_calls,timing_events}/part-NNNNN.parquet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tracetap.contribute.review import CONTENT_LEVEL, Review
from tracetap.contribute.shape import KEPT_EXTRAS
from tracetap.exporters.tables import ROUND_SCHEMA, TIMING_SCHEMA, TOOL_SCHEMA, table_batches
from tracetap.tracelab import read_rows, write_rows

__all__ = [
    "JSONL",
    "MANIFEST",
    "TABLES",
    "card",
    "file_hashes",
    "read_manifest",
    "verify",
    "write_jsonl",
    "write_manifest",
    "write_shards",
]

JSONL = "tracelab/rounds.jsonl"
MANIFEST = "manifest.json"
FORMAT = "tracetap-contribution/1"
TABLES = {"rounds": ROUND_SCHEMA, "tool_calls": TOOL_SCHEMA, "timing_events": TIMING_SCHEMA}
# tt_* columns the rounds shards add to TraceLab's: name -> Arrow type.
_EXTRA_COLUMNS: dict[str, pa.DataType] = {
    "tt_contributor": pa.string(),
    "tt_kind": pa.string(),
    "tt_status": pa.int64(),
    "tt_complete": pa.bool_(),
    "tt_ttft_ms": pa.float64(),
    "tt_decode_ms": pa.float64(),
    "tt_upstream_ttfb_ms": pa.float64(),
    "tt_end_ms": pa.float64(),
    "tt_retry_count": pa.int64(),
    "tt_cache_creation_5m_tokens": pa.int64(),
    "tt_cache_creation_1h_tokens": pa.int64(),
    "tt_measured_prefix_tokens": pa.int64(),
}
_BATCH = 20_000


def write_jsonl(rows: Iterable[dict[str, Any]], root: Path) -> int:
    path = root / JSONL
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        return write_rows(rows, fh)


def _extras(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {name: pa.array([r.get(name) for r in rows], type=t) for name, t in _EXTRA_COLUMNS.items()}
    )


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_shards(root: Path) -> dict[str, int]:
    """Parquet shards of the JSONL at `root`; returns rows per table."""
    counts = dict.fromkeys(TABLES, 0)
    seq = 0
    for part, chunk in enumerate(_chunks(read_rows(root / JSONL))):
        rounds, tools, events = next(table_batches(chunk, batch_rows=len(chunk), start_seq=seq))
        extras = _extras(chunk)
        round_table = pa.Table.from_batches([rounds])
        for name in extras.column_names:
            round_table = round_table.append_column(extras.schema.field(name), extras[name])
        tables = {
            "rounds": round_table,
            "tool_calls": pa.Table.from_batches([tools], schema=TOOL_SCHEMA),
            "timing_events": pa.Table.from_batches([events], schema=TIMING_SCHEMA),
        }
        for name, table in tables.items():
            target = root / "data" / name
            target.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, target / f"part-{part:05d}.parquet")
            counts[name] += table.num_rows
        seq += len(chunk)
    if seq == 0:  # an empty dataset still has its three tables
        for name, schema in TABLES.items():
            target = root / "data" / name
            target.mkdir(parents=True, exist_ok=True)
            pq.write_table(schema.empty_table(), target / "part-00000.parquet")
    return counts


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(root: Path) -> dict[str, dict[str, Any]]:
    """Every file under `root` but the manifest: relative path -> sha256 and size."""
    return {
        p.relative_to(root).as_posix(): {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != MANIFEST
    }


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """manifest.json: `manifest` plus the format and every other file's hash."""
    out = {"format": FORMAT, **manifest, "files": file_hashes(root)}
    (root / MANIFEST).write_text(json.dumps(out, indent=2, sort_keys=False) + "\n")
    return out


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root} has no {MANIFEST}: not a tracetap contribution")
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r} is not {FORMAT}")
    return data


def verify(root: Path) -> list[str]:
    """What does not match the manifest (empty when every file's SHA-256 and size agree and
    no file is missing or unlisted)."""
    listed = read_manifest(root)["files"]
    actual = file_hashes(root)
    problems = [f"{p}: missing" for p in sorted(set(listed) - set(actual))]
    problems += [f"{p}: not in the manifest" for p in sorted(set(actual) - set(listed))]
    problems += [
        f"{p}: SHA-256 differs"
        for p in sorted(set(listed) & set(actual))
        if listed[p]["sha256"] != actual[p]["sha256"]
    ]
    return problems


# -- the dataset card -------------------------------------------------------------------------
def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M" if n < 1_000_000 else "1M<n<10M"


_DESCRIPTIONS = {
    "round_pk": "row number of the round in this dataset (joins the tables)",
    "ingest_seq": "0-based order of the round in tracelab/rounds.jsonl",
    "provider": "claude, codex or openai",
    "project": "pseudonym of the working project",
    "session_id": "provider:pseudonymous session id",
    "session_file": "always null (no file paths are shared)",
    "round_index": "0-based position of the round in its session",
    "round_id": "pseudonymous response id",
    "turn_id": "pseudonymous turn id (Codex)",
    "model": "model name from the response",
    "input_tokens_total": "all input tokens of the round",
    "prefix_tokens": "input tokens read from the provider's prompt cache",
    "newly_append_tokens": "input_tokens_total - prefix_tokens",
    "output_tokens": "output tokens, reasoning included",
    "reasoning_output_tokens": "reasoning tokens where the provider says",
    "first_input_event_type": "user_message or tool_result",
    "home": "always null",
    "user": "always null",
    "store": "where the row came from (tracetap)",
    "trace_key": "provider:session_id:round_id",
    "tool_index": "0-based index of the call in its round",
    "tool_name": "tool the model called",
    "tool_call_id": "pseudonymous call id (pairs call and result)",
    "emitted_at": "when the call's block completed in the stream (UTC)",
    "result_at": "when the request carrying its result arrived (UTC)",
    "tool_wall_latency_ms": "result_at - emitted_at",
    "tool_internal_latency_ms": "runner-reported duration, when stated",
    "is_error": "whether the result was an error",
    "input_chars": "characters of the tool arguments (not shared)",
    "result_chars": "characters of the tool result (not shared)",
    "event_index": "1-based index of the event in its round",
    "event_type": "user_message, tool_result, reasoning, text, tool_call",
    "source": "where in the request or response the event was seen",
    "timestamp": "when the proxy saw it (UTC)",
    "content_chars": "characters of the message or block (not shared)",
}


def _schema_table(name: str, schema: pa.Schema, extras: bool) -> list[str]:
    lines = [f"**{name}**", "", "| column | type | meaning |", "|---|---|---|"]
    for f in schema:
        meaning = _DESCRIPTIONS.get(f.name, f.name.replace("_", " "))
        lines.append(f"| {f.name} | {f.type} | {meaning} |")
    if extras:
        for col, t in _EXTRA_COLUMNS.items():
            lines.append(f"| {col} | {t} | {KEPT_EXTRAS[col]} |")
    return [*lines, ""]


def _origin(stores: Mapping[str, int]) -> str:
    """Where the rounds came from: the wire (store `tracetap`) or the agents' own logs."""
    wire = stores.get("tracetap", 0)
    logs = sum(n for name, n in stores.items() if name != "tracetap")
    if not logs:
        return "recorded on the wire"
    if not wire:
        return "imported from the agents' own logs"
    return f"recorded on the wire ({wire:,} rounds) and imported from the agents' logs ({logs:,})"


def card(review: Review, *, title: str, license: str, tool_version: str) -> str:
    """README.md: a Hugging Face dataset card whose configs point at the Parquet shards."""
    counts = review.stats.counts()
    header = [
        "---",
        f"license: {license}",
        f"pretty_name: {json.dumps(title)}",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- agent-traces",
        "- tracelab",
        "- llm-serving",
        "- kv-cache",
        "size_categories:",
        f"- {_size_category(counts['rounds'])}",
        "configs:",
    ]
    for i, name in enumerate(TABLES):
        header += [
            f"- config_name: {name}",
            "  data_files:",
            "  - split: train",
            f"    path: data/{name}/*.parquet",
        ]
        if i == 0:
            header.append("  default: true")
    header.append("---")
    body = [
        "",
        f"# {title}",
        "",
        f"Traces of coding agents (Claude Code, Codex and other OpenAI-compatible clients) "
        f"{_origin(review.stats.stores)}, packaged by tracetap {tool_version}: "
        f"{counts['rounds']:,} LLM rounds, "
        f"{counts['tool_calls']:,} tool calls and {counts['timing_events']:,} timing events in "
        f"{counts['sessions']:,} sessions from {counts['contributors']:,} contributor(s). "
        "One round is one model invocation. The rows follow the TraceLab trace format "
        "(uw-syfi/TraceLab), so its analysis scripts read them unchanged.",
        "",
        "## Files",
        "",
        "- `data/rounds/*.parquet`, `data/tool_calls/*.parquet`, "
        "`data/timing_events/*.parquet`: the three TraceLab tables (configs `rounds`, "
        "`tool_calls`, `timing_events`), joined on `round_pk`.",
        f"- `{JSONL}`: the same rounds as TraceLab JSONL rows (`tracetap analyze --input`).",
        "- `REVIEW.md`: the privacy review signed off before publishing.",
        "- `manifest.json`: tool version, filters, content level, key fingerprint, row "
        "counts and the SHA-256 of every file.",
        "",
        "```python",
        "from datasets import load_dataset",
        'rounds = load_dataset("parquet", data_dir="data/rounds")',
        '# or, from the Hub: load_dataset("OWNER/NAME", "rounds")',
        "```",
        "",
        "## Schema",
        "",
    ]
    for name, schema in TABLES.items():
        body += _schema_table(name, schema, extras=name == "rounds")
    body += [
        "## Collection method",
        "",
        "tracetap runs as a local HTTPS proxy (mitmproxy) between the agents and their model "
        "APIs and records each exchange: request arrival, stream chunk times, usage, and the "
        "tool calls and results carried by consecutive requests. Secrets and personal data "
        "were scrubbed when recorded (content policy per round in the review). This dataset "
        f"was made with `tracetap contribute` at content level `{CONTENT_LEVEL}`: it holds no "
        "text of any kind, only sizes, timings, token counts and keyed pseudonyms. Each "
        "contributor chose what to include and could exclude projects.",
        "",
        "## Privacy",
        "",
        review.markdown(heading=3),
    ]
    return "\n".join(header + body)
