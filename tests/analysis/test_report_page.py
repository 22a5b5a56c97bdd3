"""The HTML report rendered in headless Chromium: headline first, a definition under every
metric, resolvable contents, titled and captioned charts, human units, groups side by side.

With TRACETAP_REPORT_SCREENSHOT=PATH the grouped report's top (1200 px wide) is also written
to PATH (how docs/report.png is made).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracetap import __version__
from tracetap.cli import app
from tracetap.tracelab import read_rows

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"
LONG_PROJECT = "a-very-long-project-name-" * 12
runner = CliRunner()

# What a report must never show: a raw epoch, or a fraction printed as a bare decimal.
EPOCH = re.compile(r"\b1[6-9]\d{8}(?:\.\d+)?\b")
LONG_DECIMAL = re.compile(r"(?<![\d.])\d+\.\d{4,}\b")


def _report(tmp_path: Path, *args: str, source: Path = FIXTURE) -> Path:
    html = tmp_path / "report.html"
    out = runner.invoke(
        app, ["analyze", str(source), "--html", str(html), "--kv-capacity", "inf,1M", *args]
    )
    assert out.exit_code == 0, out.output
    assert f"wrote the report to {html}" in out.output
    return html


def _open(page, html: Path):
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    return page


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _report(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """Grouped by project, one project with a name far wider than the page."""
    root = tmp_path_factory.mktemp("grouped")
    rows = list(read_rows(FIXTURE))
    for row in rows:
        if row["provider"] == "codex":
            row["project"] = LONG_PROJECT
    source = root / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return _report(root, "--group-by", "project", source=source)


def test_headline_comes_first_with_tracelab_values(page, plain):
    p = _open(page, plain)
    first_h2 = p.locator("h2").first.inner_text()
    assert first_h2 == "Headline findings"
    rows = p.locator("#headline table.headline tbody tr")
    assert rows.count() == 5
    text = p.locator("#headline").inner_text()
    for published in ("95.7 %", "8.8", "0.3 s / 13.6 s", "85.4 % / 98.6 %", "92 % / 5 % / 3 %"):
        assert published in text
    assert "92.1 %" in text  # this trace's token-weighted hit rate: 473,556 / 514,012
    assert "TraceLab (University of Washington)" in text
    for i in range(5):
        assert rows.nth(i).locator(".def").inner_text().strip()


def test_contents_links_resolve_and_provenance_is_complete(page, plain):
    p = _open(page, plain)
    hrefs = p.eval_on_selector_all("nav.toc a", "as => as.map(a => a.getAttribute('href'))")
    assert len(hrefs) >= 12 and "#headline" in hrefs and "#provenance" in hrefs
    for href in hrefs:
        assert p.locator(href).count() == 1, href
    prov = p.locator("#provenance").inner_text()
    for needle in (str(FIXTURE), "everything", __version__, "UTC", "2026-03-21 10:05 UTC"):
        assert needle in prov
    assert "2026-06-01 05:43 UTC" in p.locator("header").inner_text()  # the date range


def test_every_metric_and_table_is_defined(page, plain):
    p = _open(page, plain)
    defs = p.eval_on_selector_all(
        "tr.metric-row", "rs => rs.map(r => (r.querySelector('.def') || {}).innerText || '')"
    )
    assert len(defs) > 60 and all(d.strip() for d in defs)
    captions = p.eval_on_selector_all(
        "table",
        "ts => ts.map(t => [(t.querySelector('caption b') || {}).innerText || '',"
        " (t.querySelector('caption .def') || {}).innerText || ''])",
    )
    assert captions and all(title.strip() and d.strip() for title, d in captions), captions


def test_charts_have_titles_and_captions(page, plain):
    p = _open(page, plain)
    figures = p.eval_on_selector_all(
        "figure",
        "fs => fs.map(f => [f.querySelector('img').naturalWidth,"
        " f.querySelector('img').getAttribute('src').slice(0, 22),"
        " (f.querySelector('figcaption b') || {}).innerText || '',"
        " (f.querySelector('figcaption') || {}).innerText || ''])",
    )
    assert len(figures) == 8
    for width, src, title, caption in figures:
        assert width > 300 and src == "data:image/png;base64,"
        assert len(title) > 8 and len(caption) > len(title) + 30
    titles = [t for _, _, t, _ in figures]
    assert "Context growth between rounds." in titles


def test_numbers_are_in_human_units(page, plain):
    p = _open(page, plain)
    main_right = p.eval_on_selector("main", "m => m.getBoundingClientRect().right")
    rights = p.eval_on_selector_all("table", "ts => ts.map(t => t.getBoundingClientRect().right)")
    assert max(rights) <= main_right + 1  # every table fits the page
    text = p.locator("main").inner_text()
    assert not EPOCH.findall(text)
    assert not LONG_DECIMAL.findall(text), LONG_DECIMAL.findall(text)[:5]
    assert "%" in text and " s" in text and "k" in text
    style = p.eval_on_selector(
        "td.num",
        "c => [getComputedStyle(c).textAlign, getComputedStyle(c).fontVariantNumeric]",
    )
    assert style == ["right", "tabular-nums"]


def test_groups_side_by_side_and_long_text_does_not_push_numbers(page, grouped, tmp_path):
    p = _open(page, grouped)
    heads = p.eval_on_selector_all(
        "table.compare thead", "hs => hs.map(h => h.innerText.split('\\t').map(s => s.trim()))"
    )
    assert heads, "no group comparison table"
    for head in heads:
        assert head[1] == "this trace" and LONG_PROJECT in head[2:]  # all rows, then groups
        assert len(head) == 4  # a label column, this trace, the two projects
    headline = p.locator("table.headline thead").inner_text()
    assert "TraceLab" in headline and headline.count("\t") >= 4  # two groups beside the total
    # the long project name is cut in its cell: every table fits the page
    main_right = p.eval_on_selector("main", "m => m.getBoundingClientRect().right")
    rights = p.eval_on_selector_all("table", "ts => ts.map(t => t.getBoundingClientRect().right)")
    assert max(rights) <= main_right + 1
    cell = p.locator(f"th[title='{LONG_PROJECT}']").first
    assert cell.evaluate("c => c.scrollWidth > c.clientWidth")  # ellipsized, full name on hover
    # charts split per group
    captions = p.eval_on_selector_all("figcaption b", "bs => bs.map(b => b.innerText)")
    assert any(c.endswith(f"project {LONG_PROJECT}.") for c in captions)
    assert len(captions) == 7 * 3 + 1  # kv_sim (one chart) runs over all rows only


def test_grouped_by_provider_headline_and_screenshot(page, tmp_path):
    html = _report(tmp_path, "--group-by", "provider")
    p = _open(page, html)
    p.set_viewport_size({"width": 1200, "height": 900})
    head = p.locator("table.headline thead").inner_text().split("\t")
    assert [h.strip() for h in head] == ["finding", "this trace", "claude", "codex", "TraceLab"]
    hit = p.locator("table.headline tbody tr").first.inner_text()
    assert "92.1 %" in hit and "94.2 %" in hit and "83.0 %" in hit  # all, claude, codex
    p.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    target = os.environ.get("TRACETAP_REPORT_SCREENSHOT")
    if target:  # the README's picture: the top of the page, 1200 px wide
        p.screenshot(path=target, clip={"x": 0, "y": 0, "width": 1200, "height": 760})
