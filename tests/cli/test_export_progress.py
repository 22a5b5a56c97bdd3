"""Progress of `tracetap export` and `tracetap import`: a bar with %, rate and ETA on a terminal
(stderr), nothing when stderr is no terminal, and the data on stdout the same either way; help
that fits 80 columns."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tracetap.cli import app, export, imports, transfer
from tracetap.cli.transfer import Meter, read_file
from tracetap.tracelab import read_rows

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tracelab_sample.jsonl"
runner = CliRunner()


class Screen(io.StringIO):
    """What a terminal would show, without colours and cursor codes."""

    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.getvalue())


def terminal() -> tuple[Console, Screen]:
    screen = Screen()
    return Console(file=screen, force_terminal=True, color_system=None, width=120), screen


def test_a_bar_in_rows_shows_percent_rate_and_eta_on_a_terminal() -> None:
    console, screen = terminal()
    with Meter("export", 1000, console=console) as meter:
        for _ in range(1000):
            meter.rows()
        meter._bar.refresh()  # type: ignore[union-attr]  # draw the finished state once
    shown = screen.text()
    assert "100%" in shown and "1,000/1,000 rows" in shown
    assert re.search(r"[\d,]+ rows/s", shown) and re.search(r"\d+:\d\d:\d\d", shown)


def test_a_file_is_measured_in_bytes_read_of_its_size(tmp_path: Path) -> None:
    packed = tmp_path / "rows.jsonl.gz"
    packed.write_bytes(gzip.compress(FIXTURE.read_bytes() * 40))
    for path in (FIXTURE, packed):
        console, screen = terminal()
        with Meter("import", path.stat().st_size, unit="bytes", console=console) as meter:
            rows = list(read_file(path, meter))
            task = meter._bar.tasks[0]  # type: ignore[union-attr]
            assert task.completed == task.total == path.stat().st_size
            meter._bar.refresh()  # type: ignore[union-attr]
        assert rows == list(read_rows(path)) and meter.done_rows == len(rows)
        shown = screen.text()
        assert "100%" in shown and f"{len(rows):,} rows" in shown and "rows/s" in shown


def test_no_terminal_no_bar() -> None:
    screen = Screen()
    console = Console(file=screen, force_terminal=False)
    with Meter("export", 10, console=console) as meter:
        for _ in range(10):
            meter.rows()
    assert screen.text() == "" and meter.done_rows == 10


def test_stdout_carries_the_same_rows_with_a_bar_on_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = runner.invoke(app, ["export", "tracelab", "-i", str(FIXTURE)])
    assert plain.exit_code == 0 and plain.stderr.strip() == "wrote 19 rows"
    console, screen = terminal()
    for module in (transfer, export):
        monkeypatch.setattr(module, "err", console)
    barred = runner.invoke(app, ["export", "tracelab", "-i", str(FIXTURE)])
    assert barred.exit_code == 0
    assert barred.stdout == plain.stdout and len(barred.stdout.splitlines()) == 19
    assert "rows/s" in screen.text() and "wrote 19 rows" in screen.text()


def test_import_of_a_file_shows_bytes_and_rows_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    console, screen = terminal()
    for module in (transfer, imports):
        monkeypatch.setattr(module, "err", console)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    result = runner.invoke(app, ["import", "tracelab", str(FIXTURE), "--db", db])
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    shown = screen.text()
    size = f"{FIXTURE.stat().st_size / 1000:.1f}"  # rich's DownloadColumn: decimal kB
    assert f"/{size} kB" in shown and "rows/s" in shown and "imported 19 new rounds" in shown


COMMANDS = [
    ("export", name)
    for name in ("tracelab", "tracelab-duckdb", "replay-csv", "mooncake", "atif", "otel", "parquet")
] + [("import", name) for name in ("claude-code", "codex", "tracelab")]


@pytest.mark.parametrize("command", COMMANDS, ids="-".join)
def test_help_fits_80_columns(command: tuple[str, str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    too_wide = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert too_wide == [] and "…" not in result.stdout
    assert "../" not in result.stdout and "shared/" not in result.stdout
    lines = result.stdout.splitlines()
    example = next(i for i, line in enumerate(lines) if "Example: tracetap" in line)
    assert lines[example + 1].strip() == "", "the example is cut onto two lines"
