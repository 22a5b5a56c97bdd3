"""`tracetap analyze` from a SQLite store against the same rows as TraceLab JSONL: load + compute.

Replicates the published fixture rows (new ids, shifted times) to N rows, writes them as JSONL,
imports them into a temporary SQLite store, then times loading and every analysis from each input
in its own child process; prints the seconds and the store/JSONL ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "tracelab_sample.jsonl"


def replicated(n: int) -> Iterator[dict[str, Any]]:
    """`n` rows: copies of the fixture's sessions, each copy with its own ids, 10 min later."""
    from tracetap.tracelab import format_ts, parse_ts, read_rows

    base = list(read_rows(FIXTURE))
    copy = 0
    made = 0
    while made < n:
        shift = copy * 600.0
        tag = f"c{copy:06d}"
        for row in base:
            if made == n:
                return
            r = json.loads(json.dumps(row))
            r["session_id"] = f"{r['session_id']}-{tag}"
            r["round_id"] = f"{r['round_id']}-{tag}"
            r["trace_key"] = f"{r['trace_key']}-{tag}"
            for e in r["timing_events"]:
                e["timestamp"] = format_ts(parse_ts(e["timestamp"]) + shift)  # type: ignore[operator]
                if e.get("tool_call_id"):
                    e["tool_call_id"] += f"-{tag}"
            for t in r["tools"]:
                t["tool_call_id"] += f"-{tag}"
                for key in ("emitted_at", "result_at"):
                    if t.get(key):
                        t[key] = format_ts(parse_ts(t[key]) + shift)  # type: ignore[operator]
            yield r
            made += 1
        copy += 1


def _child(source: str) -> None:
    from tracetap.analysis import load, run

    t0 = time.perf_counter()
    ds = load(source)
    t1 = time.perf_counter()
    run(ds)
    t2 = time.perf_counter()
    print(json.dumps({"load_s": t1 - t0, "compute_s": t2 - t1, "total_s": t2 - t0}))


def _timed(source: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", source], check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rows", type=int, default=50_000, help="rows to build (50000)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per input; the best is kept")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.child:
        _child(ns.child)
        return 0
    from tracetap.importers.tracelab import import_rows
    from tracetap.tracelab import write_rows

    with tempfile.TemporaryDirectory(prefix="tracetap-analyze-speed-") as tmp:
        jsonl = Path(tmp) / "rows.jsonl"
        with jsonl.open("w", encoding="utf-8") as out:
            write_rows(replicated(ns.rows), out)
        url = f"sqlite:///{Path(tmp) / 'store.db'}"
        t = time.perf_counter()
        stored = import_rows(url, replicated(ns.rows), source="tracelab")
        print(f"{stored:,} rows imported into the store in {time.perf_counter() - t:.1f} s")
        best: dict[str, dict[str, float]] = {}
        for _ in range(ns.repeat):
            for name, source in (("jsonl", str(jsonl)), ("store", url)):
                got = _timed(source)
                if name not in best or got["total_s"] < best[name]["total_s"]:
                    best[name] = got
    print(f"{'input':<8}{'load s':>10}{'compute s':>12}{'total s':>10}")
    for name, r in best.items():
        print(f"{name:<8}{r['load_s']:>10.2f}{r['compute_s']:>12.2f}{r['total_s']:>10.2f}")
    ratio = best["store"]["total_s"] / best["jsonl"]["total_s"]
    load_ratio = best["store"]["load_s"] / best["jsonl"]["load_s"]
    print(f"store/JSONL: total {ratio:.2f}x, load {load_ratio:.2f}x ({ns.rows:,} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
