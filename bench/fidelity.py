"""Cache fidelity: how often tracetap's measured reusable prefix and the provider's reported
cache read agree, and the named reasons they differ, over a TraceLab JSONL or a store.

A TraceLab JSONL is imported into a temporary SQLite store first (`import_tracelab`); its rows
are measured only when they carry tracetap's `tt_measured_prefix_tokens` (a tracetap export).
Prints the summary (rounds, the share that agree within the tokenizer tolerance, reasons by
count) and writes it to bench/results/fidelity.json.

Run: .venv/bin/python bench/fidelity.py trace.jsonl[.gz]   or   bench/fidelity.py --db URL
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy.orm import Session  # noqa: E402

from tracetap.importers.tracelab import import_tracelab  # noqa: E402
from tracetap.storage.db import make_engine  # noqa: E402
from tracetap.tokens.report import REASONS, cache, fidelity_summary  # noqa: E402


def summarize(db_url: str) -> dict[str, Any]:
    """The fidelity summary of every session in the store at `db_url`."""
    engine = make_engine(db_url)
    try:
        with Session(engine) as s:
            return fidelity_summary(cache(s))
    finally:
        engine.dispose()


def summarize_tracelab(path: str | Path) -> dict[str, Any]:
    """The fidelity summary of a TraceLab JSONL, imported into a temporary SQLite store."""
    with tempfile.TemporaryDirectory(prefix="tt-fidelity-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'store.db'}"
        import_tracelab(url, path)
        return summarize(url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace", nargs="?", help="TraceLab .jsonl or .jsonl.gz")
    ap.add_argument("--db", help="a store URL instead of a trace")
    ap.add_argument("-o", "--out", default=str(ROOT / "bench/results/fidelity.json"))
    args = ap.parse_args()
    if bool(args.trace) == bool(args.db):
        ap.error("give a TRACE or --db URL")
    summary = summarize(args.db) if args.db else summarize_tracelab(args.trace)
    share = summary["agree_share"]
    print(f"sessions            {summary['sessions']}")
    print(f"rounds measured     {summary['rounds']}  (unmeasured {summary['unmeasured_rounds']})")
    print(f"rounds compared     {summary['compared_rounds']}")
    print(
        f"agree (tolerance)   {summary['agree_within_tolerance']}"
        + ("" if share is None else f"  ({100 * share:.1f} %)")
    )
    for reason, n in summary["reasons"].items():
        print(f"  {reason:22} {n:>8}  {REASONS[reason]}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
