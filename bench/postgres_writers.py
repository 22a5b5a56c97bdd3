"""Concurrent writers into one PostgreSQL: 4 ingest pipelines (as 4 proxies run them), each in
its own process, writing agent sessions at full speed. Reports rounds/s and checks the count.

Run: python bench/postgres_writers.py [--writers 4 --rounds 1000] [--db URL]
(without --db it starts a throwaway PostgreSQL 15 like the tests do).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RESULTS = ROOT / "bench" / "results"


def writer(url: str, index: int, rounds: int, transforms: bool, ready, go, out) -> None:  # type: ignore[no-untyped-def]
    from ingest_rate import exchanges

    from tracetap.ingest.pipeline import Pipeline
    from tracetap.ingest.steps import build_transforms
    from tracetap.storage.db import make_engine

    items = exchanges(rounds, seed=index, prefix=f"w{index}-")  # each writer its own sessions
    steps, exts = build_transforms() if transforms else ([], [])
    p = Pipeline(
        make_engine(url), Path(tempfile.mkdtemp()) / "journal", transforms=steps, extensions=exts
    )
    p.start()
    ready.set()
    go.wait()
    t0 = time.perf_counter()
    for ex in items:
        p.submit(ex)
    while p.stats.rounds_recorded < len(items):
        time.sleep(0.01)
    out.put((index, p.stats.rounds_recorded, time.perf_counter() - t0))
    p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1000, help="rounds per writer")
    ap.add_argument("--db")
    ap.add_argument(
        "--no-transforms",
        action="store_true",
        help="skip scrubbing and tokenization (storage alone)",
    )
    args = ap.parse_args()
    server = None
    url = args.db
    if url is None:
        from tests.support.postgres import PostgresServer

        server = PostgresServer()
        url = server.create_database()
    from tracetap.storage.db import ensure_schema, make_engine

    ensure_schema(make_engine(url))
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    readies = [ctx.Event() for _ in range(args.writers)]
    procs = [
        ctx.Process(
            target=writer, args=(url, i, args.rounds, not args.no_transforms, readies[i], go, out)
        )
        for i in range(args.writers)
    ]
    for p in procs:
        p.start()
    for r in readies:
        r.wait(300)
    t0 = time.perf_counter()
    go.set()
    done = [out.get(timeout=900) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(60)
    import sqlalchemy as sa

    from tracetap.storage import models as m

    with make_engine(url).connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(m.Round)).scalar_one()
    total = sum(n for _, n, _ in done)
    result = {
        "writers": args.writers,
        "rounds": total,
        "stored": stored,
        "wall_s": wall,
        "rounds_per_s": total / wall,
        "transforms": not args.no_transforms,
    }
    print(
        f"{args.writers} writers -> PostgreSQL: {total} rounds in {wall:.1f}s = "
        f"{total / wall:,.0f} rounds/s (stored {stored}; scrubbing+tokens "
        f"{'on' if result['transforms'] else 'off'})"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "postgres_writers.json").write_text(json.dumps(result, indent=2))
    if server is not None:
        server.close()


if __name__ == "__main__":
    main()
