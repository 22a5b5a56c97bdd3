"""Every export of a session recorded from the real CLIs is read back by the library that owns
the format; the public export holds none of the session's private strings."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.agents_cli import AgentCLIs, run_claude, run_codex
from tests.support.scripted import ScriptedUpstream
from tracetap.exporters.tracelab import iter_rows

pytestmark = pytest.mark.slow


def _export(fmt: str, db: str, out: Path, *extra: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tracetap", "export", fmt, "--db", db, "-o", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, agent_clis: AgentCLIs) -> dict:
    """One Claude Code and one Codex session recorded through the proxy (content kept)."""
    from tests.support.proxy import start_proxy

    tmp = tmp_path_factory.mktemp("recorded")
    up = ScriptedUpstream().start()
    try:
        proxy = start_proxy(
            tmp / "p",
            confdir=tmp / "mitm",
            anthropic_upstream=up.url,
            openai_upstream=up.url,
            extra_args=["--content", "full"],
        )
        for name, run, url in (
            ("claude", run_claude, proxy.anthropic_url),
            ("codex", run_codex, proxy.openai_url),
        ):
            work = tmp / f"work-{name}"
            work.mkdir()
            proc = run(
                agent_clis, url, work, "Create one.txt and two.txt.", home=tmp / f"home-{name}"
            )
            assert proc.returncode == 0, proc.stderr
        assert proxy.stop() == 0
    finally:
        up.stop()
    rows = list(iter_rows(proxy.db_url))
    assert {r["provider"] for r in rows} == {"claude", "codex"} and len(rows) >= 6
    return {"db": proxy.db_url, "rows": rows, "tmp": tmp}


def test_duckdb_file_has_the_exact_layout(recorded: dict, tmp_path: Path) -> None:
    out = tmp_path / "trace.duckdb"
    _export("tracelab-duckdb", recorded["db"], out)
    con = duckdb.connect(str(out), read_only=True)
    assert con.execute("SELECT count(*) FROM rounds").fetchone()[0] == len(recorded["rows"])
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'tool_calls'"
        ).fetchall()
    )
    assert types["emitted_at"] == "TIMESTAMP" and types["tool_wall_latency_ms"] == "BIGINT"
    assert types["is_error"] == "BOOLEAN"
    calls = sum(len(r["tools"]) for r in recorded["rows"])
    assert con.execute("SELECT count(*) FROM tool_calls").fetchone()[0] == calls
    assert con.execute("SELECT min(event_index) FROM timing_events").fetchone()[0] == 1


def test_parquet_reads_back_with_pyarrow(recorded: dict, tmp_path: Path) -> None:
    _export("parquet", recorded["db"], tmp_path / "pq")
    rounds = ds.dataset(tmp_path / "pq" / "rounds", partitioning="hive").to_table()
    assert rounds.num_rows == len(recorded["rows"])
    tools = ds.dataset(tmp_path / "pq" / "tool_calls", partitioning="hive").to_table()
    assert tools.num_rows == sum(len(r["tools"]) for r in recorded["rows"])


def test_otlp_json_parses_with_the_proto(recorded: dict, tmp_path: Path) -> None:
    out = tmp_path / "spans.json"
    _export("otel", recorded["db"], out)
    spans = []
    for line in out.read_text().splitlines():
        msg = json_format.Parse(line, ExportTraceServiceRequest())
        spans += [s for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]
    calls = sum(len(r["tools"]) for r in recorded["rows"])
    assert len(spans) == len(recorded["rows"]) + calls  # a span per round and per tool call


def test_mooncake_hash_ids_reproduce_shared_prefixes(recorded: dict, tmp_path: Path) -> None:
    out = tmp_path / "mooncake.jsonl"
    _export("mooncake", recorded["db"], out, "--block-size", "64")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(recorded["rows"])
    assert all(set(x) == {"timestamp", "input_length", "output_length", "hash_ids"} for x in lines)
    assert [x["timestamp"] for x in lines] == sorted(x["timestamp"] for x in lines)
    # within a session each request re-sends the previous one: later rounds reuse its blocks
    by_session: dict[str, list] = {}
    for row, line in zip(sorted(recorded["rows"], key=lambda r: r["tt_request_at"]), lines):
        by_session.setdefault(row["session_id"], []).append(line["hash_ids"])
    for ids in by_session.values():
        for before, after in zip(ids, ids[1:]):
            assert after[: len(before) // 2] == before[: len(before) // 2]


def test_replay_csv_and_atif(recorded: dict, tmp_path: Path) -> None:
    _export("replay-csv", recorded["db"], tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == len(recorded["rows"])
    assert all(int(r["prefix_len"]) >= 0 and int(r["tool_wait_after_ms"]) >= 0 for r in rows)
    _export("atif", recorded["db"], tmp_path / "a.jsonl")
    trajectories = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(trajectories) == 2 and all(t["steps"] for t in trajectories)


def test_public_export_holds_no_private_string(recorded: dict, tmp_path: Path) -> None:
    out = tmp_path / "public.jsonl"
    _export("tracelab", recorded["db"], out, "--public")
    text = out.read_text()
    private = {str(recorded["tmp"]), "one.txt", "echo one", "tee", "cat one.txt"}
    for row in recorded["rows"]:
        private |= {row["session_id"].split(":", 1)[1], row["round_id"]}
        private |= {t["tool_call_id"] for t in row["tools"]}
    assert [s for s in private if s in text] == []
    assert len(text.splitlines()) == len(recorded["rows"])
