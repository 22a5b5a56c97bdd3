"""The real Claude Code and Codex CLIs through `tracetap proxy --ui-port`: the open sessions page
shows their rounds while the agents are still running, without a reload."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agents_cli import AgentCLIs, run_claude, run_codex
from tests.support.proxy import free_port
from tests.support.scripted import ScriptedUpstream

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_upstream() -> Iterator[ScriptedUpstream]:
    """The scripted API streaming one event per 0.1 s: each round takes a second or two, so
    the page has time to show a round before the agent's next one ends."""
    upstream = ScriptedUpstream(gap=0.1).start()
    try:
        yield upstream
    finally:
        upstream.stop()


def _watch(page: Any, provider: str, run: Callable[[], Any]) -> tuple[list[int], list[int], Any]:
    """Run the agent in a thread; the main rounds the page shows for its session meanwhile, and
    within 5 s after it ends (the last journal flush), and the agent's result."""
    done: list[Any] = []
    agent = threading.Thread(target=lambda: done.append(run()))
    agent.start()
    during: list[int] = []
    script = f"""() => {{
        const row = document.querySelector('tr.session-row[data-ref^="{provider}:"]');
        return row ? Number(row.dataset.main) : 0;
    }}"""
    while agent.is_alive():
        during.append(page.evaluate(script))
        page.wait_for_timeout(100)
    agent.join()
    after: list[int] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not after or after[-1] < 3):
        after.append(page.evaluate(script))
        page.wait_for_timeout(100)
    return during, after, done[0]


def test_the_live_page_shows_real_agents_rounds_as_they_happen(
    tmp_path: Path,
    agent_clis: AgentCLIs,
    slow_upstream: ScriptedUpstream,
    tracetap_proxy: Any,
    page: Any,
) -> None:
    ui_port = free_port()
    proxy = tracetap_proxy(
        anthropic_upstream=slow_upstream.url,
        openai_upstream=slow_upstream.url,
        extra_args=["--ui-port", str(ui_port)],
    )
    deadline = time.monotonic() + 30
    while "Web UI:" not in proxy.log.read_text():
        assert time.monotonic() < deadline, proxy.log.read_text()
        time.sleep(0.1)
    page.goto(f"http://127.0.0.1:{ui_port}/")
    page.wait_for_selector("#status.live")
    page.evaluate("window.notReloaded = true")

    for provider, run in (
        (
            "claude",
            lambda work: run_claude(
                agent_clis, proxy.anthropic_url, work, PROMPT, home=tmp_path / "hc"
            ),
        ),
        (
            "codex",
            lambda work: run_codex(
                agent_clis, proxy.openai_url, work, PROMPT, home=tmp_path / "hx"
            ),
        ),
    ):
        work = tmp_path / f"work-{provider}"
        work.mkdir()
        during, after, proc = _watch(page, provider, functools.partial(run, work))
        assert proc.returncode == 0, proc.stderr
        # a round was on the page while the agent was still at work, then all three
        assert any(0 < n < 3 for n in during), (provider, during)
        assert after[-1] == 3, (provider, during, after, proxy.log.read_text())
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=str(tmp_path / "live-agents.png"))
    assert proxy.stop() == 0, proxy.log.read_text()


PROMPT = "Create one.txt and two.txt."
