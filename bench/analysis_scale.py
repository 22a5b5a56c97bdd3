"""Analysis at TraceLab scale: wall time and peak RSS of `tracetap analyze` on a 357k-round trace.

Generates the trace with bench/gen_tracelab.py (or takes --input), runs the full analysis in a
child process, prints a table and writes bench/results/analysis_scale.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(path: str, only: list[str]) -> None:
    from tracetap.analysis import load, run

    t0 = time.perf_counter()
    ds = load(path)
    t1 = time.perf_counter()
    timings = {"load": t1 - t0}
    for name in only:
        s = time.perf_counter()
        run(ds, [name])
        timings[name] = time.perf_counter() - s
    timings["total"] = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"timings_s": timings, "peak_rss_mb": rss_mb}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=357161)
    ap.add_argument("--input", help="existing TraceLab JSONL(.gz) to analyse instead")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    from tracetap.analysis.registry import ANALYSES

    names = list(ANALYSES)
    if ns.child:
        _child(ns.child, names)
        return 0
    path = ns.input
    gen_s = None
    if path is None:
        path = str(ROOT / "bench" / "results" / f"gen_{ns.rounds}.jsonl")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "gen_tracelab.py"),
                "-n",
                str(ns.rounds),
                "-o",
                path,
            ],
            check=True,
        )
        gen_s = time.perf_counter() - t
    size_mb = Path(path).stat().st_size / 1e6
    out = subprocess.run(
        [sys.executable, __file__, "--child", path], check=True, capture_output=True, text=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update({"rounds": ns.rounds, "input": path, "input_mb": size_mb, "generate_s": gen_s})
    print(
        f"input {path} ({size_mb:.0f} MB), generated in "
        f"{'-' if gen_s is None else f'{gen_s:.1f}'} s"
    )
    print(f"{'step':<18}{'seconds':>10}")
    for k, v in res["timings_s"].items():
        print(f"{k:<18}{v:>10.2f}")
    print(f"{'peak RSS (MB)':<18}{res['peak_rss_mb']:>10.0f}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "analysis_scale.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
