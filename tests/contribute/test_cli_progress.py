"""`tracetap contribute` on a terminal draws a bar per step with %, rate and ETA on stderr; off
a terminal it draws nothing; `--push` uploads the folder it wrote."""

from __future__ import annotations

import io
import re
from pathlib import Path

import huggingface_hub
from rich.console import Console
from typer.testing import CliRunner

from tests.contribute.conftest import PLANTED_PROJECT
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


def test_push_uploads_what_was_written(store: dict, tmp_path: Path, monkeypatch) -> None:
    calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def upload_folder(self, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(("upload_folder", kw))
        return "https://hub.invalid/datasets/team/traces/commit/0123"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    out = tmp_path / "ds"
    result = runner.invoke(
        app,
        [
            "contribute",
            "--db",
            store["url"],
            "-o",
            str(out),
            "--exclude-project",
            PLANTED_PROJECT,
            "--push",
            "team/traces",
        ],
        env={"TRACETAP_KEY_FILE": str(store["key"])},
    )
    assert result.exit_code == 0, result.output
    assert [name for name, _ in calls] == ["create_repo", "upload_folder"]
    assert calls[1][1]["folder_path"] == str(out) and calls[1][1]["repo_id"] == "team/traces"
    assert "pushed to team/traces: https://hub.invalid/" in result.stderr
    assert "━" not in result.stderr  # no bar when stderr is not a terminal


def test_refused_push_uploads_nothing(store: dict, tmp_path: Path, monkeypatch) -> None:
    def fail(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("nothing may be uploaded")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fail)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fail)
    result = runner.invoke(
        app,
        ["contribute", "--db", store["url"], "-o", str(tmp_path / "ds"), "--push", "team/x"],
        env={"TRACETAP_KEY_FILE": str(store["key"])},
    )
    assert result.exit_code == 2 and "residual hit(s)" in result.stderr
