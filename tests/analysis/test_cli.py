"""`tracetap analyze` through typer's CliRunner on the published fixture."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from tracetap.cli import app

FIXTURE = str(Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl")
runner = CliRunner()


def test_json_only_one_analysis():
    out = runner.invoke(app, ["analyze", FIXTURE, "--json", "--only", "tokens"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert set(data) == {"tokens", "_input"}
    assert data["tokens"]["all"]["prefix_hit_rate"] == 473556 / 514012


def test_group_by_provider_and_tables():
    out = runner.invoke(
        app,
        ["analyze", FIXTURE, "--group-by", "provider", "--only", "overview"],
        env={"COLUMNS": "120"},
    )
    assert out.exit_code == 0, out.output
    # groups side by side: one table, columns = all rows then each provider
    lines = out.output.splitlines()
    assert any(line.split() == ["metric", "this", "trace", "claude", "codex"] for line in lines)
    assert any(line.split() == ["llm_rounds_total", "19", "10", "9"] for line in lines)
    assert "provider = " not in out.output  # no repeated table per group


def test_html_is_self_contained_and_plots_written(tmp_path):
    html = tmp_path / "r.html"
    out = runner.invoke(
        app,
        [
            "analyze",
            FIXTURE,
            "--html",
            str(html),
            "--plots",
            str(tmp_path / "figs"),
            "--kv-capacity",
            "inf,1M",
        ],
    )
    assert out.exit_code == 0, out.output
    text = html.read_text()
    assert not re.search(r"(src|href)\s*=\s*['\"]?https?:", text)
    assert "http://" not in text and "https://" not in text
    assert text.count("data:image/png;base64,") >= 5
    assert len(list((tmp_path / "figs").glob("*.png"))) >= 5


def test_bad_inputs_are_clear_errors(tmp_path):
    out = runner.invoke(app, ["analyze", str(tmp_path / "missing.jsonl")])
    assert out.exit_code == 2 and "no such file" in out.output  # a path to fix
    out = runner.invoke(app, ["analyze", FIXTURE, "--group-by", "colour"])
    assert out.exit_code == 2 and "group-by" in out.output
    out = runner.invoke(app, ["analyze", FIXTURE, "--only", "nope"])
    assert out.exit_code == 2


def test_help_has_summary_and_example():
    out = runner.invoke(app, ["analyze", "--help"])
    assert out.exit_code == 0
    assert "Analyse a recorded trace" in out.output and "Example:" in out.output
    for opt in (
        "--json",
        "--plots",
        "--html",
        "--group-by",
        "--only",
        "--kv-capacity",
        "--kv-block-size",
        "--kv-policy",
        "--kv-scope",
    ):
        assert opt in out.output


def test_progress_callback_counts_every_step():
    from tracetap.analysis import load, run

    calls = []
    ds = load(FIXTURE, group_by="provider")
    run(
        ds,
        ["overview", "kv_sim"],
        {"capacities": [None]},
        progress=lambda name, n: calls.append((name, n)),
    )
    # overview: all + 2 providers; kv_sim is not grouped
    assert calls[0] == ("", 4) and len(calls) == 5


def test_help_fits_80_columns_and_lists_the_analyses():
    from tracetap.analysis.registry import ANALYSES
    from tracetap.cli.analyze import _NAMES

    assert _NAMES.split(", ") == list(ANALYSES)
    out = runner.invoke(app, ["analyze", "--help"], env={"COLUMNS": "80"})
    assert out.exit_code == 0
    assert max(len(line) for line in out.output.splitlines()) <= 80
    assert "latency_predict" in out.output and "--since" in out.output
