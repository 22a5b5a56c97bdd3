"""`tracetap contribute merge`: duplicates dropped by content hash, contributor pseudonyms kept
apart, review and card made anew, inputs checked against their manifests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.contribute.conftest import PLANTED_PROJECT
from tracetap.cli import app
from tracetap.contribute.package import JSONL, write_manifest
from tracetap.tracelab import read_rows, write_rows

runner = CliRunner()


def _contribute(store: dict, out: Path, name: str, key: Path) -> list[dict]:
    result = runner.invoke(
        app,
        [
            "contribute",
            "--db",
            store["url"],
            "-o",
            str(out),
            "--contributor",
            name,
            "--exclude-project",
            PLANTED_PROJECT,
            "--workspace",
            str(store["tmp"] / "work"),
        ],
        env={"TRACETAP_KEY_FILE": str(key)},
    )
    assert result.exit_code == 0, result.output
    return list(read_rows(out / JSONL))


@pytest.fixture(scope="module")
def parts(store: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("merge")
    other_key = tmp / "other-key"
    other_key.write_text("another-team-key-9876543210\n")
    return {
        "a": (tmp / "a", _contribute(store, tmp / "a", "alice", store["key"])),
        # the same rounds sent by a teammate with the team key: duplicates of a's
        "b": (tmp / "b", _contribute(store, tmp / "b", "bob", store["key"])),
        # another team's key: other pseudonyms, so other rounds
        "c": (tmp / "c", _contribute(store, tmp / "c", "alice", other_key)),
    }


def test_merge_drops_duplicates_and_keeps_contributors_apart(parts: dict, tmp_path: Path) -> None:
    (a, rows_a), (b, rows_b), (c, rows_c) = parts["a"], parts["b"], parts["c"]
    out = tmp_path / "all"
    result = runner.invoke(app, ["contribute", "merge", str(a), str(b), str(c), "-o", str(out)])
    assert result.exit_code == 0, result.output
    merged = list(read_rows(out / JSONL))
    assert len(merged) == len(rows_a) + len(rows_c)
    contributors = {r["tt_contributor"] for r in merged}
    assert contributors == {rows_a[0]["tt_contributor"], rows_c[0]["tt_contributor"]}
    assert len(contributors) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["duplicates_dropped"] == len(rows_b)
    assert manifest["rows"]["rounds"] == len(merged)
    assert [s["name"] for s in manifest["sources"]] == ["a", "b", "c"]
    review = (out / "REVIEW.md").read_text()
    assert f"{len(rows_b):,} duplicate round(s) dropped" in review
    card = (out / "README.md").read_text()
    assert f"{len(merged):,} LLM rounds" in card and "from 2 contributor(s)" in card
    # the census of every input is summed
    census = [json.loads((p / "manifest.json").read_text())["census"] for p in (a, b, c)]
    secrets = sum(
        p["distinct"] for cs in census for p in cs["placeholders"] if p["type"] == "secret"
    )
    assert (
        sum(p["distinct"] for p in manifest["census"]["placeholders"] if p["type"] == "secret")
        == secrets
    )
    assert runner.invoke(app, ["contribute", "verify", str(out)]).exit_code == 0


def test_one_pseudonym_from_two_keys_stays_two_contributors(parts: dict, tmp_path: Path) -> None:
    (a, rows_a), (c, rows_c) = parts["a"], parts["c"]
    forged = tmp_path / "forged"
    shutil.copytree(c, forged)
    same = rows_a[0]["tt_contributor"]
    with (forged / JSONL).open("w") as fh:
        write_rows(({**r, "tt_contributor": same} for r in rows_c), fh)
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["contributors"] = [same]
    del manifest["files"], manifest["format"]
    write_manifest(forged, manifest)
    out = tmp_path / "merged"
    result = runner.invoke(app, ["contribute", "merge", str(a), str(forged), "-o", str(out)])
    assert result.exit_code == 0, result.output
    contributors = {r["tt_contributor"] for r in read_rows(out / JSONL)}
    assert len(contributors) == 2 and same in contributors


def test_merge_refuses_a_tampered_input(parts: dict, tmp_path: Path) -> None:
    (a, _), (c, _) = parts["a"], parts["c"]
    bad = tmp_path / "bad"
    shutil.copytree(c, bad)
    (bad / "REVIEW.md").write_text("nothing to see\n")
    out = str(tmp_path / "o")
    result = runner.invoke(app, ["contribute", "merge", str(a), str(bad), "-o", out])
    assert result.exit_code == 2
    assert "does not match its manifest: REVIEW.md: SHA-256 differs" in result.stderr
    assert not (tmp_path / "o").exists()
    result = runner.invoke(app, ["contribute", "merge", str(a), str(tmp_path), "-o", out])
    assert result.exit_code == 2 and "not a tracetap contribution" in result.stderr
