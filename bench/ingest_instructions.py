"""Ingest cost in instructions per round, counted by valgrind (the host's speed does not move it).

Run: python bench/ingest_instructions.py [--pre-framed] [--small 200 --large 600]. Needs valgrind
(`apt-get install valgrind`). Writes bench/results/ingest_instructions.json.

The ingest_rate bench's rounds and the steps `tracetap proxy --ingest-workers 2` runs: a worker's
share (parsing, interning, tokens, scrubbing, hashes, pickling its records) over the rounds of one
of two shards, and the pipeline process's share (unpickling those records, reuse across sessions,
dedupe, journal with fsync, SQLite). Each is run under cachegrind for a small and a large number of
rounds; the difference over the extra rounds is the cost per round in steady state (start-up,
imports and the first rounds of each session cancel out). PYTHONHASHSEED is fixed, so repeated
runs count the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_rate import RESULTS, exchanges, transforms_and_extensions

from tracetap.allocator import collect_less, keep_freed_memory

BATCH = 128


def _worker_part(path: Path, n: int) -> None:
    from tracetap.ingest.normalize import Normalizer
    from tracetap.ingest.pool import defer_global
    from tracetap.ingest.steps import build_steps

    items = pickle.loads(path.read_bytes())[:n]
    normalizer = Normalizer(defer_global(build_steps()), resent_refs=True)
    keep_freed_memory()
    collect_less()
    for i in range(0, len(items), BATCH):  # as a worker: normalize a batch, pickle its records
        pickle.dumps(normalizer.batch(items[i : i + BATCH]), protocol=pickle.HIGHEST_PROTOCOL)


def _pipeline_part(path: Path, n: int) -> None:
    from tracetap.ingest.pipeline import Pipeline
    from tracetap.storage.db import ensure_schema, make_engine

    batches = pickle.loads(path.read_bytes())
    tmp = Path(tempfile.mkdtemp(prefix="tt-instr-"))
    engine = make_engine(f"sqlite:///{tmp / 'store.db'}")
    ensure_schema(engine)
    transforms, extensions = transforms_and_extensions()
    p = Pipeline(engine, tmp / "journal", transforms=transforms, extensions=extensions)
    p.journal.recover()
    keep_freed_memory()
    collect_less()
    done = 0
    for blobs in batches:
        if done >= n:
            break
        records = [r for blob in blobs for r in pickle.loads(blob)][: n - done]  # n exactly
        done += len(records)
        records = [p._finish(r) for r in records]
        p._drain_journal([(records, p._journal_records(records))])
    p.journal.close()
    shutil.rmtree(tmp, ignore_errors=True)


def _records(items: list, shards: int = 2) -> list[list[bytes]]:
    """What the workers send back, batch by batch (as the pipeline receives them)."""
    from tracetap.ingest.normalize import Normalizer
    from tracetap.ingest.pool import SessionRouter, defer_global
    from tracetap.ingest.steps import build_steps

    normalizers = [Normalizer(defer_global(build_steps()), resent_refs=True) for _ in range(shards)]
    route = SessionRouter(shards)  # as NormalizerPool.send splits a batch
    out = []
    for i in range(0, len(items), BATCH):
        parts: list[list] = [[] for _ in range(shards)]
        for item in items[i : i + BATCH]:
            parts[route(item)].append(item)
        out.append(
            [
                pickle.dumps(normalizers[k].batch(part), protocol=pickle.HIGHEST_PROTOCOL)
                for k, part in enumerate(parts)
                if part
            ]
        )
    return out


def _instructions(part: str, path: Path, n: int) -> int:
    cmd = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        part,
        str(path),
        str(n),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"valgrind run of the {part} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--small", type=int, default=200, help="rounds in the short run")
    ap.add_argument("--large", type=int, default=600, help="rounds in the long run")
    ap.add_argument(
        "--pre-framed",
        action="store_true",
        help="ingest_rate's exchanges of before 2026-12-02 (see its --pre-framed)",
    )
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        part, path, n = args.child
        (_worker_part if part == "worker" else _pipeline_part)(Path(path), int(n))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    if not 0 < args.small < args.large:
        raise SystemExit("--small must be positive and below --large")
    from tracetap.ingest.pool import SessionRouter

    tmp = Path(tempfile.mkdtemp(prefix="tt-instr-"))
    try:
        # ingest_rate's burst (20 sessions of 100 rounds); worker 0 of 2 has half of them
        items = exchanges(max(2000, 3 * args.large), pre_framed=args.pre_framed)
        route = SessionRouter(2)
        (tmp / "worker.pkl").write_bytes(
            pickle.dumps([x for x in items if route(x) == 0][: args.large])
        )
        (tmp / "pipeline.pkl").write_bytes(pickle.dumps(_records(items[: args.large])))
        per_round = {}
        for part in ("worker", "pipeline"):
            counts = [_instructions(part, tmp / f"{part}.pkl", n) for n in (args.small, args.large)]
            per_round[part] = (counts[1] - counts[0]) / (args.large - args.small)
            print(f"{part}: {per_round[part] / 1e6:.3f}M instructions per round", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "instructions_per_round": per_round,
        "small": args.small,
        "large": args.large,
        "pre_framed": args.pre_framed,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "ingest_instructions_pre_framed" if args.pre_framed else "ingest_instructions"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
