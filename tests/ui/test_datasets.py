"""`tracetap ui --dataset DIR`: the Datasets page lists folders made by `tracetap contribute`
and shows each one's privacy review as HTML; a folder that is not one is a one-line mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.storage.rounds import claude_session
from tests.ui.seed import write
from tracetap.cli import app
from tracetap.privacy.scrub import Scrubber

EMAIL = "jane.doe@acme-corp.io"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A store whose prompt held an e-mail address (scrubbed as ingest does) and the dataset
    `tracetap contribute` makes of it: (store URL, dataset folder)."""
    tmp = tmp_path_factory.mktemp("ui-datasets")
    key = tmp / "pseudonym.key"
    key.write_text("ui-datasets-key-0123456789\n")
    prompt = Scrubber(key.read_bytes().strip()).text(f"mail {EMAIL}")
    assert EMAIL not in prompt
    url = f"sqlite:///{tmp / 'store.db'}"
    write(url, claude_session(3, session="sess-ds-1", first_prompt=prompt), key)
    out = tmp / "my-dataset"
    result = CliRunner().invoke(
        app,
        ["contribute", "--db", url, "-o", str(out), "--contributor", "alice"],
        env={"TRACETAP_KEY_FILE": str(key), "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    return url, out


def test_datasets_page_lists_the_dataset_and_shows_its_review(
    page: Any, dataset: tuple[str, Path], ui: Any
) -> None:
    url, folder = dataset
    manifest = json.loads((folder / "manifest.json").read_text())
    running = ui(url, "--dataset", str(folder))
    page.goto(running.url + "/")
    page.click("#nav-datasets")
    page.wait_for_selector("tr.dataset-row")
    cells = page.locator("tr.dataset-row td").all_inner_texts()
    assert cells[0] == "my-dataset"
    assert cells[3] == "none"  # content level
    assert cells[4] == str(manifest["rows"]["rounds"]) == "3"
    assert cells[-1] == str(manifest["residual_hits"])
    review = page.locator("section.review")
    headings = review.locator("h1, h2").all_inner_texts()
    assert "Privacy review" in headings and "What each field shares" in headings
    # the per-field table is an HTML table, one row per field, not markdown text
    fields = review.locator("table").first
    assert fields.locator("th").all_inner_texts() == ["field", "treatment", "shared"]
    assert fields.locator("tbody tr").count() >= 5
    assert "|---|" not in review.inner_text()
    # the placeholder counts: the redacted e-mail address is counted
    placeholders = review.locator("table", has=page.locator("th", has_text="occurrences")).first
    rows = {
        r[0]: r[1:]
        for r in (
            row.locator("td").all_inner_texts() for row in placeholders.locator("tbody tr").all()
        )
    }
    assert any("mail" in kind.lower() and counts[0] == "1" for kind, counts in rows.items()), rows
    assert EMAIL not in review.inner_text()


def test_without_datasets_there_is_no_datasets_page(dataset: tuple[str, Path], ui: Any) -> None:
    running = ui(dataset[0])
    assert 'href="/datasets"' not in httpx.get(running.url + "/").text
    assert httpx.get(running.url + "/datasets").status_code == 404
    assert httpx.get(running.url + "/api/datasets").status_code == 404


def test_raw_html_in_a_review_is_escaped(dataset: tuple[str, Path], tmp_path: Path) -> None:
    from tracetap.ui.datasets import render_review

    html = render_review("# R\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<table>" in html and "<td>1</td>" in html


@pytest.mark.parametrize("missing", ["REVIEW.md", "manifest.json"])
def test_a_folder_that_is_not_a_dataset_is_one_line_exit_2(
    dataset: tuple[str, Path], tmp_path: Path, missing: str
) -> None:
    url, folder = dataset
    bad = tmp_path / "not-a-dataset"
    bad.mkdir()
    for name in ("REVIEW.md", "manifest.json"):
        if name != missing:
            (bad / name).write_bytes((folder / name).read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACETAP_")}
    done = subprocess.run(
        [sys.executable, "-m", "tracetap", "ui", "--db", url, "--port", "0"]
        + ["--dataset", str(folder), "--dataset", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --dataset {bad}"), done.stderr
    assert missing in lines[0] and "tracetap contribute" in lines[0]
    assert done.stdout == ""
