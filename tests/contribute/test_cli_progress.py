"""`tracetap contribute` on a terminal draws a bar per step with %, rate and ETA on stderr; off
a terminal it draws nothing; `--push` uploads the folder it wrote (to a local stand-in Hub)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants
from rich.console import Console
from typer.testing import CliRunner, Result

from tests.contribute.conftest import PLANTED_PROJECT
from tests.contribute.hub import FakeHub, fake_hub
from tracetap.cli import app
from tracetap.cli.contribute import _progress

runner = CliRunner()


def test_a_step_shows_percent_rate_and_eta_on_a_terminal() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system=None, width=120)
    with _progress(console) as update:
        assert update is not None
        for done in range(0, 1001, 100):
            update("writing rows", done, 1000)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "writing rows" in shown and "100%" in shown and "1000/1000" in shown
    assert re.search(r"\d+:\d\d:\d\d", shown)  # the ETA column


def test_nothing_is_drawn_off_a_terminal() -> None:
    screen = io.StringIO()
    with _progress(Console(file=screen, force_terminal=False)) as update:
        assert update is None
    assert screen.getvalue() == ""


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    for h in fake_hub():
        monkeypatch.setattr(constants, "ENDPOINT", h.url)  # as HF_ENDPOINT
        monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
        yield h


def _push(store: dict, out: Path, *args: str) -> Result:
    return runner.invoke(
        app,
        ["contribute", "--db", store["url"], "-o", str(out), "--push", "team/traces", *args],
        env={"TRACETAP_KEY_FILE": str(store["key"])},
    )


def test_push_uploads_every_file_to_the_hub(store: dict, tmp_path: Path, hub: FakeHub) -> None:
    out = tmp_path / "ds"
    result = _push(store, out, "--exclude-project", PLANTED_PROJECT, "--private")
    assert result.exit_code == 0, result.output
    create = [json.loads(b) for m, p, b in hub.calls if p == "/api/repos/create"]
    assert create == [
        {"name": "traces", "organization": "team", "type": "dataset", "visibility": "private"}
    ]
    sent = hub.committed_files()
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert sent == local  # every file, byte for byte, the manifest included
    assert f"pushed to team/traces: {hub.url}/datasets/team/traces/commit/" in result.stderr
    assert "━" not in result.stderr  # no bar when stderr is not a terminal


def test_a_refused_contribution_pushes_nothing(store: dict, tmp_path: Path, hub: FakeHub) -> None:
    result = _push(store, tmp_path / "ds")  # the planted project's tool name is a residual hit
    assert result.exit_code == 2 and "residual hit(s)" in result.stderr
    assert hub.calls == [] and not (tmp_path / "ds").exists()


def test_an_unreachable_hub_is_one_line_and_keeps_the_folder(
    store: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
    out = tmp_path / "ds"
    result = _push(store, out, "--exclude-project", PLANTED_PROJECT)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: push to team/traces failed: ") and str(out) in last
    assert "Traceback" not in result.stderr and (out / "manifest.json").is_file()
