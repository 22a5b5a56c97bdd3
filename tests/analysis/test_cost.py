"""The report's cost: the rounds priced by tracetap.pricing, per model and per project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracetap.analysis import analyze
from tracetap.analysis.cost import compute, cost_section
from tracetap.pricing import costs_by
from tracetap.tracelab import read_rows

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"


def test_cost_equals_pricing_over_the_rows():
    rows = list(read_rows(FIXTURE))
    result = analyze(str(FIXTURE), only=["overview"])
    data = compute(result)
    by_model = costs_by(rows, "model")
    assert set(data["by"]["model"]) == set(by_model)
    for model, total in by_model.items():
        assert data["by"]["model"][model].usd == pytest.approx(total.usd)
        assert data["by"]["model"][model].rounds == total.rounds
    assert data["total"].usd == pytest.approx(sum(t.usd for t in by_model.values()))
    assert data["total"].usd > 0 and data["saving"] > 0  # cache reads are cheaper than input
    assert data["user_requests"] == 5


def test_cost_section_in_the_report():
    section = cost_section(analyze(str(FIXTURE), only=["overview"]))
    assert section is not None
    title, question, body = section
    assert title == "Cost" and question.endswith("?")
    assert "Cost by model" in body and "Cost by project" in body
    assert "claude-opus-4-8" in body and "gpt-5.4" in body and "¢" in body


def test_no_cost_section_when_no_model_has_a_price(tmp_path):
    rows = list(read_rows(FIXTURE))
    for row in rows:
        row["model"] = "a-model-no-table-knows"
    path = tmp_path / "unpriced.jsonl"
    with path.open("w") as out:
        out.writelines(json.dumps(r) + "\n" for r in rows)
    assert cost_section(analyze(str(path), only=["overview"])) is None


def test_a_long_cost_table_keeps_the_top_and_sums_the_rest(tmp_path):
    rows = list(read_rows(FIXTURE))
    for i, row in enumerate(rows):
        row["project"] = f"project-{i:02d}"
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    section = cost_section(analyze(str(path), only=["overview"]))
    assert section is not None
    body = section[2]
    assert "4 others" in body  # 19 projects: the 15 costliest, then the rest in one row
    assert body.count("<td class='text' title='project-") == 15
