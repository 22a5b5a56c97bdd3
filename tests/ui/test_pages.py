"""`tracetap ui` in headless Chromium: the sessions page (live, filtered), a session's waterfall
and diff, the analysis page offline, a screenshot."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.storage.rounds import claude_session
from tests.ui.seed import REWRITE_INDEX, REWRITE_ROUND, REWRITTEN, write

# `TRACETAP_UI_SCREENSHOT=docs/ui-sessions.png` also keeps the sessions page's screenshot there
# (the README's picture).
SCREENSHOT_ENV = "TRACETAP_UI_SCREENSHOT"

SEEDED = {
    "claude:sess-ui-1",
    "claude:rewrite-1",
    "claude:92ee5b8a-429c-e80b-5db6-5381512f4697",
    "codex:a611041f-625d-6fad-5e59-845850dc6543",
}


def _refs(page: Any) -> set[str]:
    return set(page.eval_on_selector_all("tr.session-row", "rows => rows.map(r => r.dataset.ref)"))


def _wait_refs(page: Any, want: set[str], timeout: float = 5.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while _refs(page) != want and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    return _refs(page)


def test_sessions_page_lists_the_seeded_sessions_with_their_totals(
    page: Any, store: str, ui: Any, tmp_path: Path
) -> None:
    running = ui(store)
    page.goto(running.url + "/")
    page.wait_for_selector("tr.session-row")
    assert _refs(page) == SEEDED
    row = page.locator('tr[data-ref="claude:sess-ui-1"] td')
    cells = row.all_inner_texts()
    assert cells[1] == "claude" and cells[3] == "claude-sonnet-4-5"
    assert cells[4] == "6" and cells[5] == "6"  # rounds, tool calls
    assert cells[6] == f"{sum(1000 * (i + 1) for i in range(6)):,}"  # tokens in
    assert cells[9].endswith("%")  # measured reuse of a tokenized session
    assert cells[10].startswith("$")  # priced: claude-sonnet-4-5 is in the price table
    shot = tmp_path / "ui-sessions.png"
    page.set_viewport_size({"width": 1280, "height": 330})
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])


def test_a_round_written_meanwhile_appears_without_reload_within_a_second(
    page: Any, store: str, ui: Any, tmp_path: Path
) -> None:
    running = ui(store)
    page.goto(running.url + "/")
    page.wait_for_selector("tr.session-row")
    page.evaluate("window.notReloaded = true")
    write(store, claude_session(2, session="live-1", t0=1_790_000_000.0), tmp_path / "k")
    page.wait_for_selector('tr[data-ref="claude:live-1"]', timeout=1000)
    assert page.evaluate("window.notReloaded") is True
    rounds = page.locator('tr[data-ref="claude:live-1"] td').nth(4)
    assert rounds.inner_text() == "2"


def test_filters_narrow_the_list(page: Any, store: str, ui: Any) -> None:
    running = ui(store)
    page.goto(running.url + "/")
    page.wait_for_selector("tr.session-row")
    page.select_option("select[name=agent]", "codex")
    assert _wait_refs(page, {"codex:a611041f-625d-6fad-5e59-845850dc6543"}) == {
        "codex:a611041f-625d-6fad-5e59-845850dc6543"
    }
    assert "agent=codex" in page.url
    page.select_option("select[name=agent]", "")
    page.fill("input[name=q]", "rewr")  # a session id prefix
    assert _wait_refs(page, {"claude:rewrite-1"}) == {"claude:rewrite-1"}
    page.fill("input[name=q]", "")
    page.fill("input[name=model]", "claude-opus")
    want = {"claude:92ee5b8a-429c-e80b-5db6-5381512f4697"}
    assert _wait_refs(page, want) == want
    page.fill("input[name=model]", "")
    page.fill("input[name=since]", "2026-05-01")  # the Codex session is from March
    page.fill("input[name=until]", "2026-05-30")  # sess-ui-1 starts 2026-05-28
    assert _wait_refs(page, {"claude:sess-ui-1"}) == {"claude:sess-ui-1"}
    page.fill("input[name=until]", "yesterday")
    page.wait_for_selector("#error:has-text('yesterday')")


def test_the_waterfall_has_one_bar_per_round_and_the_diff_marks_the_rewrite(
    page: Any, store: str, ui: Any
) -> None:
    running = ui(store)
    page.goto(running.url + "/session/claude:rewrite-1")
    page.wait_for_selector(".wf-bar")
    assert page.locator(".wf-bar").count() == 5
    assert page.locator("tr.round-row").count() == 5
    assert page.locator(".wf-wait").count() == 4  # a tools wait before every later round
    # round 3 re-sent the history with message 2 edited
    page.click(f".wf-bar >> nth={REWRITE_ROUND}")
    page.wait_for_selector("#content h3")
    broke = page.inner_text("#broke")
    assert f"messages[{REWRITE_INDEX}]" in broke and "history-rewritten" in broke
    # in the history, just the edited message differs (the system prompt's billing line
    # changes every round, and is marked too)
    changed = page.locator("#content .elem.changed[data-section=messages]")
    assert changed.count() == 1
    assert changed.get_attribute("data-index") == str(REWRITE_INDEX)
    assert REWRITTEN in changed.inner_text()
    # the round after it only appends: nothing marked as breaking
    page.click(f"tr.round-row >> nth={REWRITE_ROUND + 1}")
    page.wait_for_selector("#appended")
    assert page.locator("#broke").count() == 0
    assert page.locator("#content .elem.new").count() >= 2  # the appended messages


def test_a_session_page_grows_live(page: Any, store: str, ui: Any, tmp_path: Path) -> None:
    running = ui(store)
    write(store, claude_session(2, session="grow-1", t0=1_791_000_000.0), tmp_path / "k")
    page.goto(running.url + "/session/claude:grow-1")
    page.wait_for_selector(".wf-bar")
    assert page.locator(".wf-bar").count() == 2
    write(store, claude_session(3, session="grow-1", t0=1_791_000_000.0)[2:], tmp_path / "k")
    page.wait_for_selector(".wf-bar >> nth=2", timeout=1000)
    assert page.locator(".wf-bar").count() == 3


def test_the_analysis_page_draws_plotly_figures_offline(page: Any, store: str, ui: Any) -> None:
    running = ui(store)
    origin = urlsplit(running.url).netloc
    elsewhere: list[str] = []
    page.on(
        "request", lambda r: None if urlsplit(r.url).netloc == origin else elsewhere.append(r.url)
    )
    page.goto(running.url + "/analysis?agent=claude")
    page.wait_for_selector(".figure .main-svg", timeout=60_000)
    assert page.evaluate("typeof Plotly") == "object"
    assert page.locator(".figure").count() >= 5
    assert page.inner_text("#status") == "21 rounds · agent claude"  # 6 + 5 + 10 imported
    assert elsewhere == []  # plotly.js came from this server
    page.select_option("select[name=agent]", "openai")
    page.wait_for_selector("#figures:has-text('no rounds match agent openai')")
    assert page.locator(".figure").count() == 0


def test_subagents_run_on_a_lane_of_their_own(
    page: Any, store: str, ui: Any, tmp_path: Path
) -> None:
    main = claude_session(3, session="lanes-1", t0=1_792_000_000.0)
    sub = claude_session(2, session="lanes-1", t0=1_792_000_001.0, first_prompt="read the logs")
    for rnd in sub:
        rnd.kind = "subagent"
    write(store, sorted(main + sub, key=lambda r: r.request_at), tmp_path / "k")
    running = ui(store)
    page.goto(running.url + "/session/claude:lanes-1")
    page.wait_for_selector(".wf-bar")
    assert page.locator(".wf-row").count() == 5  # a row per round
    labels = page.locator(".wf-label").all_inner_texts()
    assert [label.split()[1] for label in labels] == [
        "main",
        "subagent",
        "main",
        "subagent",
        "main",
    ]
    page.check("#by-lane")
    page.wait_for_function("document.querySelectorAll('.wf-row').length === 2")
    lanes = page.locator(".wf-label").all_inner_texts()
    assert lanes[0] == "main (3)" and lanes[1].startswith("subagent ") and lanes[1].endswith("(2)")
    assert page.locator(".wf-row >> nth=1").locator(".wf-bar.lane-subagent").count() == 2
    assert page.locator(".wf-bar").count() == 5  # still one bar per round
