"""`tracetap contribute` on a store recorded from the secret/PII corpus: the review counts every
planted item, none reaches any file, the card loads with `datasets`, residual hits refuse."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from tests.contribute.conftest import IGNORED_PROJECT, PLANTED_PROJECT, PLANTED_TOOL
from tracetap.cli import app
from tracetap.contribute.collect import PLACEHOLDERS, placeholder_identity
from tracetap.privacy.scrub import Scrubber
from tracetap.tracelab import check_row, parse_ts, read_rows

runner = CliRunner()


def _run(store: dict, out: Path, *args: str) -> tuple[int, str, str]:
    env = {"TRACETAP_KEY_FILE": str(store["key"]), "COLUMNS": "200"}
    result = runner.invoke(
        app,
        ["contribute", "--db", store["url"], "-o", str(out), "--contributor", "alice", *args],
        env=env,
    )
    return result.exit_code, result.stdout, result.stderr


def _clean(store: dict, out: Path, *args: str) -> tuple[int, str, str]:
    """A contribution without the session whose tool is named after its project."""
    return _run(
        store,
        out,
        "--exclude-project",
        PLANTED_PROJECT,
        "--workspace",
        str(store["tmp"] / "work"),
        *args,
    )


@pytest.fixture(scope="module")
def dataset(store: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "corpus-ds"
    code, stdout, stderr = _clean(store, out)
    assert code == 0, stdout + stderr
    return out


def _expected_placeholders(store: dict) -> Counter[str]:
    """Distinct values per placeholder type that scrubbing each planted item on its own
    replaces (every item must be replaced by at least one)."""
    scrub = Scrubber(store["key"].read_bytes().strip())
    found: dict[str, set[str]] = {t: set() for t in PLACEHOLDERS}
    for item in store["items"]:
        text = unquote(scrub.text(item.text))  # a query string's placeholders are encoded
        hits = [(t, m.group(0)) for t, p in PLACEHOLDERS.items() for m in p.finditer(text)]
        assert hits, f"the scrubber leaves no placeholder for planted {item.label}"
        for t, value in hits:
            found[t].add(placeholder_identity(t, value))
    return Counter({t: len(v) for t, v in found.items() if v})


def test_review_counts_every_planted_item(store: dict, dataset: Path) -> None:
    census = json.loads((dataset / "manifest.json").read_text())["census"]
    totals: Counter[str] = Counter()
    for p in census["placeholders"]:
        totals[p["type"]] += p["distinct"]
    expected = _expected_placeholders(store)
    assert expected["secret"] >= 150 and expected["email"] >= 15 and expected["ip"] >= 10
    for kind, n in expected.items():
        assert totals[kind] >= n, (kind, totals[kind], n)
    review = (dataset / "REVIEW.md").read_text()
    for name in ("secrets", "e-mail addresses", "IP addresses", "home-path user names"):
        assert re.search(rf"\| {name} \| [1-9]", review), name
    assert "github-pat" in review and "connection-string-password" in review
    assert census["unscrubbed"] == []  # every finding in the recorded text is a placeholder


def _all_strings(dataset: Path) -> bytes:
    """Raw bytes of every file, plus every value of every Parquet column read back."""
    parts = []
    for path in sorted(dataset.rglob("*")):
        if not path.is_file():
            continue
        parts.append(path.read_bytes())
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            for column in table.column_names:
                parts.append(repr(table.column(column).to_pylist()).encode())
    return b"\n".join(parts)


def test_no_planted_value_in_any_file(store: dict, dataset: Path) -> None:
    data = _all_strings(dataset)
    leaked = [
        (it.label, v) for it in store["items"] for v in (it.value, *it.forms) if v.encode() in data
    ]
    assert leaked == []
    for name in (b"ledger-app", b"jdoe", b"sess-corpus-0001", IGNORED_PROJECT.encode()):
        assert name not in data
    assert b"<secret:" not in data and b"email.invalid" not in data  # no text at all


def test_every_row_is_a_public_tracelab_row(dataset: Path) -> None:
    rows = list(read_rows(dataset / "tracelab" / "rounds.jsonl"))
    assert rows and all(r["project"].startswith("project_") for r in rows)
    assert [p for r in rows for p in check_row(r)] == []  # TraceLab's contract holds
    assert all("input" not in t for r in rows for t in r["tools"])
    assert {r["tt_contributor"] for r in rows} == {rows[0]["tt_contributor"]}
    assert rows[0]["tt_contributor"].startswith("contributor_")
    assert not any(k for r in rows for k in r if k in ("tt_round_uid", "tt_request_at"))


def test_ignore_file_excludes_its_project(store: dict, dataset: Path) -> None:
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["options"]["excluded_projects"] == 2  # the planted one and the ignored one
    rows = list(read_rows(dataset / "tracelab" / "rounds.jsonl"))
    # the ignored session's prompt was "my diary": 8 chars, in no remaining round
    assert all(r["current_user_message_chars"] != len("my diary") for r in rows)
    assert ".tracetapignore" in (dataset / "REVIEW.md").read_text()


def test_ignore_file_found_under_a_workspace(store: dict, tmp_path: Path) -> None:
    work = tmp_path / "ws"
    (work / "ledger-app").mkdir(parents=True)
    (work / "ledger-app" / ".tracetapignore").write_text("")
    code, _, stderr = _run(store, tmp_path / "out", "--workspace", str(work), "--dry-run", "--yes")
    assert code == 0
    assert f"excluded project ledger-app: .tracetapignore in {work / 'ledger-app'}" in stderr
    assert not (tmp_path / "out").exists()


def test_card_loads_with_datasets(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    text = (dataset / "README.md").read_text()
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["license"] == "cc-by-4.0" and header["task_categories"]
    assert {c["config_name"] for c in header["configs"]} == {
        "rounds",
        "tool_calls",
        "timing_events",
    }
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(dataset / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.configs
    manifest = json.loads((dataset / "manifest.json").read_text())
    cache = str(tmp_path / "cache")
    rounds = datasets.load_dataset(
        "parquet", data_dir=str(dataset / "data" / "rounds"), split="train", cache_dir=cache
    )
    assert rounds.num_rows == manifest["rows"]["rounds"]
    assert "tt_contributor" in rounds.column_names and "prefix_tokens" in rounds.column_names
    tools = datasets.load_dataset(str(dataset), "tool_calls", split="train", cache_dir=cache)
    assert tools.num_rows == manifest["rows"]["tool_calls"]
    assert "## Privacy" in text and "### Second scan of the output" in text
    assert "clients) recorded on the wire, packaged by tracetap" in text


def test_analyze_reads_the_jsonl(dataset: Path) -> None:
    result = runner.invoke(app, ["analyze", str(dataset / "tracelab" / "rounds.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)


def test_manifest_hashes_verify(dataset: Path, tmp_path: Path) -> None:
    manifest = json.loads((dataset / "manifest.json").read_text())
    files = {p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json"}
    assert manifest["content_level"] == "none" and manifest["tool"]["name"] == "tracetap"
    assert re.fullmatch(r"[0-9a-f]{16}", manifest["key_fingerprint"])
    assert "team-shared-key" not in json.dumps(manifest)
    result = runner.invoke(app, ["contribute", "verify", str(dataset)])
    assert result.exit_code == 0 and "every file matches" in result.stdout
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(dataset, copy)
    with (copy / "tracelab" / "rounds.jsonl").open("a") as fh:
        fh.write("\n")
    result = runner.invoke(app, ["contribute", "verify", str(copy)])
    assert result.exit_code == 2
    assert "tracelab/rounds.jsonl: SHA-256 differs" in result.stdout


def test_a_residual_hit_refuses_without_yes(store: dict, tmp_path: Path) -> None:
    out = tmp_path / "refused"
    code, stdout, stderr = _run(store, out, "--workspace", str(store["tmp"] / "work"))
    assert code == 2
    assert stderr.strip().splitlines()[-1].startswith("error: ")
    assert "residual hit(s)" in stderr and "Traceback" not in stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written, no staging
    # the review names where: file, row and field, and the rule (the recorded project name)
    assert "tracelab/rounds.jsonl" in stdout and "tools[0].tool_name" in stdout
    assert "recorded-name" in stdout and f"mc… ({len(PLANTED_TOOL)} chars)" in stdout


def test_yes_writes_and_the_review_lists_each_hit(store: dict, tmp_path: Path) -> None:
    out = tmp_path / "accepted"
    code, _, _ = _run(store, out, "--workspace", str(store["tmp"] / "work"), "--yes")
    assert code == 0
    review = (out / "REVIEW.md").read_text()
    rows = list(read_rows(out / "tracelab" / "rounds.jsonl"))
    planted = [
        i for i, r in enumerate(rows, 1) if any(t["tool_name"] == PLANTED_TOOL for t in r["tools"])
    ]
    assert planted
    for n in planted:
        assert f"| tracelab/rounds.jsonl | {n} | tools[0].tool_name | recorded-name |" in review
    assert "data/tool_calls/part-00000.parquet" in review


def test_hiding_rare_tools_removes_the_hit(store: dict, tmp_path: Path) -> None:
    out = tmp_path / "hidden"
    code, _, stderr = _run(
        store, out, "--workspace", str(store["tmp"] / "work"), "--hide-rare-tools", "--k", "2"
    )
    assert code == 0, stderr
    names = {
        t["tool_name"] for r in read_rows(out / "tracelab" / "rounds.jsonl") for t in r["tools"]
    }
    assert PLANTED_TOOL not in names and any(re.fullmatch(r"tool_[0-9a-f]{8}", n) for n in names)


def test_time_granularity_and_stable_clock_shift(store: dict, tmp_path: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        code, _, stderr = _clean(store, out, "--shift-clock", "--time-granularity", "1h")
        assert code == 0, stderr
    a, b = (list(read_rows(o / "tracelab" / "rounds.jsonl")) for o in outs)
    assert a == b  # keyed: the same key and options give the same shift
    stamps = [parse_ts(e["timestamp"]) for r in a for e in r["timing_events"]]
    assert stamps and all(t % 3600 == 0 for t in stamps)
    assert [p for r in a for p in check_row(r)] == []  # order survives the coarsening
    review = (outs[0] / "REVIEW.md").read_text()
    assert "| timestamps (events, tool emitted/result) | shifted, coarsened |" in review


def test_clock_shift_keeps_intervals(store: dict, tmp_path: Path) -> None:
    plain, shifted = tmp_path / "plain", tmp_path / "shifted"
    assert _clean(store, plain)[0] == 0
    assert _clean(store, shifted, "--shift-clock")[0] == 0
    for r0, r1 in zip(
        read_rows(plain / "tracelab" / "rounds.jsonl"),
        read_rows(shifted / "tracelab" / "rounds.jsonl"),
        strict=True,
    ):
        t0 = [parse_ts(e["timestamp"]) for e in r0["timing_events"]]
        t1 = [parse_ts(e["timestamp"]) for e in r1["timing_events"]]
        offsets = {round(x - y, 3) for x, y in zip(t0, t1)}
        assert len(offsets) == 1 and offsets.pop() > 0


def test_bad_options_are_one_line_mistakes(store: dict, tmp_path: Path) -> None:
    code, _, stderr = _run(store, tmp_path / "x", "--time-granularity", "hourly")
    assert code == 2 and "--time-granularity" in stderr and "Traceback" not in stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    code, _, stderr = _run(store, tmp_path / "full")
    assert code == 2 and "not empty" in stderr
    code, _, stderr = _run(store, tmp_path / "none", "--project", "no-such-project")
    assert code == 1 and "matches" in stderr
    code, _, stderr = _run(
        store, tmp_path / "none", "--project", "acme", "--exclude-project", PLANTED_PROJECT
    )
    assert code == 1 and "nothing left to share: the 1 project(s) selected are excluded" in stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "none").exists()


def test_help_fits_80_columns() -> None:
    for args in (["contribute", "--help"], ["contribute", "merge", "--help"]):
        result = runner.invoke(app, args, env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0
        assert max(len(line) for line in result.stdout.splitlines()) <= 80
