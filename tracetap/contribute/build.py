"""`contribute` (store -> reviewed dataset folder), `merge` (datasets -> one) and `push`
(a folder -> a Hugging Face dataset repository).

Files are made in a staging folder beside the output and scanned there; the folder becomes
the output only when the review passes (or the caller accepts its hits), else it is removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from tracetap.contribute.collect import (
    IGNORE_FILE,
    Census,
    Progress,
    environment_names,
    identifying,
    select,
    store_rows,
    text_census,
)
from tracetap.contribute.package import (
    JSONL,
    card,
    read_manifest,
    verify,
    write_jsonl,
    write_manifest,
    write_shards,
)
from tracetap.contribute.review import CONTENT_LEVEL, Review, RowStats
from tracetap.contribute.scan import Scanner
from tracetap.contribute.shape import (
    Shaper,
    contributor_pseudonym,
    key_fingerprint,
    parse_granularity,
    rare_tools,
)
from tracetap.exporters.public import Pseudonymizer
from tracetap.storage.filters import Filter
from tracetap.tracelab import read_rows

__all__ = ["Options", "Outcome", "contribute", "merge", "push", "tool_version"]


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tracetap")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Options:
    """How a contribution is made (the CLI's options)."""

    contributor: str
    kind: str = "agent"
    exclude_projects: tuple[str, ...] = ()
    workspaces: tuple[Path, ...] = ()
    time_granularity: str | None = None
    shift_clock: bool = False
    hide_rare_tools: bool = False
    k: int = 5
    title: str = "Coding agent traces (tracetap)"
    license: str = "cc-by-4.0"


@dataclass
class Outcome:
    """What `contribute`/`merge` did: the review, and whether the folder was written."""

    review: Review
    written: bool
    out: Path
    excluded_local: dict[str, list[str]] = field(default_factory=dict)  # names, for the terminal
    manifest: dict[str, Any] = field(default_factory=dict)


# Decide, from the review, whether to write: True writes, False removes the staging folder.
Decide = Callable[[Review], bool]


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty: choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield stage
    finally:
        if stage.exists():
            shutil.rmtree(stage)


def _publish(stage: Path, out: Path) -> None:
    if out.is_dir():
        out.rmdir()  # empty, checked by _staging
    stage.rename(out)


def _finish(
    stage: Path,
    out: Path,
    review: Review,
    decide: Decide,
    manifest: dict[str, Any],
    opts_title: str,
    opts_license: str,
) -> tuple[bool, dict[str, Any]]:
    if not decide(review):
        return False, {}
    (stage / "REVIEW.md").write_text(review.markdown())
    (stage / "README.md").write_text(
        card(review, title=opts_title, license=opts_license, tool_version=tool_version())
    )
    written = write_manifest(stage, manifest)
    _publish(stage, out)
    return True, written


def contribute(
    engine: Engine,
    flt: Filter,
    out: Path,
    key: bytes,
    opts: Options,
    decide: Decide,
    *,
    progress: Progress | None = None,
) -> Outcome:
    """Make a dataset folder at `out` from the store: rows shaped, scanned, reviewed; `decide`
    sees the review and says whether to write. Raises FileExistsError for a non-empty `out`
    and ValueError for a bad granularity.

    Example: contribute(engine, Filter(), Path("ds"), key, Options("alice"), lambda r: r.ready)
    """
    granularity_s = parse_granularity(opts.time_granularity) if opts.time_granularity else None
    with _staging(out) as stage:
        sel = select(
            engine,
            flt,
            key,
            kind=opts.kind,
            exclude_projects=opts.exclude_projects,
            workspaces=opts.workspaces,
        )
        hidden: set[str] = set()
        if opts.hide_rare_tools:
            hidden = set(rare_tools(store_rows(engine, flt, sel, kind=opts.kind), opts.k))
        pseudonym = contributor_pseudonym(key, opts.contributor)
        shaper = Shaper(key, pseudonym, opts.shift_clock, granularity_s, hidden)
        stats = RowStats()
        uids: list[str] = []
        ids: set[str] = set(sel.session_ids())

        def shaped() -> Iterator[dict[str, Any]]:
            for row in store_rows(engine, flt, sel, kind=opts.kind):
                uids.append(str(row.get("tt_round_uid")))
                ids.update(str(row[k]) for k in ("round_id", "turn_id") if row.get(k))
                ids.update(str(t["tool_call_id"]) for t in row["tools"] if t.get("tool_call_id"))
                public = shaper(row)
                stats.add(public)
                if progress is not None and stats.rounds % 200 == 0:
                    progress("writing rows", stats.rounds, max(sel.rounds, stats.rounds))
                yield public
            if progress is not None:
                progress("writing rows", stats.rounds, stats.rounds)

        write_jsonl(shaped(), stage)
        counts = write_shards(stage)
        census = text_census(engine, uids, progress=progress)
        names = identifying(sel.names() | environment_names() | {opts.contributor})
        hits = Scanner(ids, names).folder(stage, progress)
        ps = Pseudonymizer(key)
        excluded = {
            ps.project(p): sorted({r.split(" ")[0] for r in reasons})
            for p, reasons in sel.excluded.items()
        }
        review = Review(
            stats,
            census,
            hits,
            opts.k,
            opts.time_granularity,
            opts.shift_clock,
            len(hidden),
            flt.describe(),
            excluded=excluded,
        )
        manifest = {
            "tool": {"name": "tracetap", "version": tool_version()},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "filters": flt.as_dict(),
            "kind": opts.kind,
            "content_level": CONTENT_LEVEL,
            "key_fingerprint": key_fingerprint(key),
            "contributors": [pseudonym],
            "options": {
                "time_granularity": opts.time_granularity,
                "shift_clock": opts.shift_clock,
                "hide_rare_tools": opts.hide_rare_tools,
                "hidden_tools": len(hidden),
                "k": opts.k,
                "excluded_projects": len(sel.excluded),
                "ignore_file": IGNORE_FILE,
            },
            "rows": {**stats.counts(), **{f"{t}_rows": n for t, n in counts.items()}},
            "census": census.as_dict(),
            "residual_hits": len(hits),
        }
        written, final = _finish(stage, out, review, decide, manifest, opts.title, opts.license)
        return Outcome(review, written, out, dict(sel.excluded), final)


def _content_hash(row: dict[str, Any]) -> str:
    """A round's identity across datasets: its fields but the contributor, canonical JSON."""
    body = {k: v for k, v in row.items() if k != "tt_contributor"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def merge(
    sources: Iterable[Path],
    out: Path,
    decide: Decide,
    *,
    k: int = 5,
    title: str = "Coding agent traces (tracetap)",
    license: str = "cc-by-4.0",
    progress: Progress | None = None,
) -> Outcome:
    """Combine contribution folders into one at `out`: rows whose content hash was already
    seen are dropped, a contributor pseudonym that two keys made is told apart by the key's
    fingerprint, and the review and card are made anew (a second scan of the merged files).
    Raises FileNotFoundError for a folder without a manifest and ValueError for one whose
    files do not match it."""
    folders = list(sources)
    manifests = [read_manifest(f) for f in folders]
    for folder in folders:
        problems = verify(folder)
        if problems:
            raise ValueError(f"{folder} does not match its manifest: {problems[0]}")
    owner: dict[str, str] = {}  # contributor pseudonym -> key fingerprint that made it
    for man in manifests:
        for c in man.get("contributors", []):
            owner.setdefault(c, man["key_fingerprint"])
    census = Census()
    for man in manifests:
        census.merge(Census.from_dict(man.get("census", {})))
    with _staging(out) as stage:
        stats = RowStats()
        seen: set[str] = set()
        duplicates = 0
        total = sum(m.get("rows", {}).get("rounds", 0) for m in manifests)

        def rows() -> Iterator[dict[str, Any]]:
            nonlocal duplicates
            for folder, man in zip(folders, manifests):
                fp = man["key_fingerprint"]
                for row in read_rows(folder / JSONL):
                    h = _content_hash(row)
                    if h in seen:
                        duplicates += 1
                        continue
                    seen.add(h)
                    c = row.get("tt_contributor")
                    if c and owner.get(c) != fp:  # same pseudonym from another key
                        row["tt_contributor"] = f"{c}{fp[:6]}"
                    stats.add(row)
                    if progress is not None and stats.rounds % 200 == 0:
                        progress("merging rows", stats.rounds, max(total, stats.rounds))
                    yield row

        write_jsonl(rows(), stage)
        counts = write_shards(stage)
        hits = Scanner().folder(stage, progress)
        opts = [m.get("options", {}) for m in manifests]
        grains = {o.get("time_granularity") for o in opts}
        review = Review(
            stats,
            census,
            hits,
            k,
            grains.pop() if len(grains) == 1 else None,
            all(o.get("shift_clock") for o in opts),
            sum(o.get("hidden_tools", 0) for o in opts),
            "merged contributions",
            sources=[f.name for f in folders],
            duplicates=duplicates,
        )
        manifest = {
            "tool": {"name": "tracetap", "version": tool_version()},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "filters": [m.get("filters", {}) for m in manifests],
            "kind": sorted({m.get("kind", "agent") for m in manifests}),
            "content_level": CONTENT_LEVEL,
            "key_fingerprint": sorted({m["key_fingerprint"] for m in manifests}),
            "contributors": sorted(stats.contributors),
            "sources": [
                {
                    "name": f.name,
                    "manifest_sha256": hashlib.sha256(
                        (f / "manifest.json").read_bytes()
                    ).hexdigest(),
                    "rounds": m.get("rows", {}).get("rounds"),
                }
                for f, m in zip(folders, manifests)
            ],
            "options": {"k": k, "duplicates_dropped": duplicates},
            "rows": {**stats.counts(), **{f"{t}_rows": n for t, n in counts.items()}},
            "census": census.as_dict(),
            "residual_hits": len(hits),
        }
        written, final = _finish(stage, out, review, decide, manifest, title, license)
        return Outcome(review, written, out, {}, final)


def push(folder: Path, repo: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload a contribution folder to the Hugging Face dataset repository `repo` (created when
    missing; HF_ENDPOINT and HF_TOKEN apply); returns the commit URL."""
    from huggingface_hub import HfApi

    read_manifest(folder)  # only a contribution folder is pushed
    api = HfApi(token=token)
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo,
        repo_type="dataset",
        folder_path=str(folder),
        commit_message=f"tracetap contribute: {folder.name} ({time.strftime('%Y-%m-%d')})",
    )
    return str(getattr(info, "commit_url", info))
