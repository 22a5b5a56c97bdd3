"""At 80 columns `tracetap analyze` never cuts a number: text columns and headers wrap or
ellipsize, numbers stay whole."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from tracetap.analysis.report import fit_width, records_table
from tracetap.cli import app
from tracetap.tracelab import read_rows

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"
# a number cut short: digits (and separators) ending in an ellipsis, not part of an id
CUT_NUMBER = re.compile(r"(?<![\w:.-])[\d][\d,.]*…")
runner = CliRunner()


def test_wide_numbers_survive_a_narrow_table():
    records = {
        f"a-rather-long-row-name-{i}": {f"column_{c}": 259_254_123.0 * (c + 1) for c in range(8)}
        for i in range(3)
    }
    console = Console(width=80, record=True)
    for part in fit_width(records_table("Wide", records, key="name", unit="count"), 80):
        console.print(part)
    text = console.export_text()
    for rec in records.values():
        for value in rec.values():
            assert f"{value:,.0f}" in text
    assert not CUT_NUMBER.search(text)


def test_analyze_at_80_columns_keeps_every_number(tmp_path):
    rows = list(read_rows(FIXTURE))
    for row in rows:  # numbers as wide as a long trace's: hundreds of millions of tokens
        for key in ("input_tokens_total", "prefix_tokens", "newly_append_tokens"):
            row[key] *= 10_000
    source = tmp_path / "wide.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for extra in ([], ["--group-by", "session"]):
        out = runner.invoke(
            app,
            ["analyze", str(source), "--kv-capacity", "inf,1M", *extra],
            env={"COLUMNS": "80"},
        )
        assert out.exit_code == 0, out.output
        lines = out.output.splitlines()
        assert max(len(line) for line in lines) <= 80
        assert not [line for line in lines if CUT_NUMBER.search(line)]
        assert "4.74B" in out.output  # the scaled cached tokens, whole
