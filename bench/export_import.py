"""Import, export and log-import throughput at TraceLab scale: rows/s and peak RSS of the
TraceLab import into a SQLite store, of the export back out of that store, of every export
format on a 357k-round generated trace, and of the Claude Code / Codex log parsers.

Each measurement runs in its own child process (so peak RSS is its own); the baseline is
reading the same rows without exporting, measured in the same run. Prints a table and writes
bench/results/export_import.json. Also checks each format with the external readers that are
importable (duckdb, pyarrow, opentelemetry-proto; Harbor's ATIF models and AIPerf's TraceLab
converter when `harbor` / `aiperf` are on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMATS = (
    "read-only",
    "import-tracelab",
    "store-tracelab",
    "tracelab",
    "tracelab-public",
    "tracelab-duckdb",
    "parquet",
    "replay-csv",
    "mooncake",
    "atif",
    "otel",
    "log-claude-code",
    "log-codex",
)
# import-tracelab loads the file into a SQLite store (what `tracetap import tracelab` runs);
# store-tracelab exports that store back to TraceLab JSONL (`tracetap export tracelab --db`).
DATA = ROOT / "tests" / "importers" / "data"


def _rows(path: str, n: int):
    from tracetap.tracelab import read_rows

    return itertools.islice(read_rows(path), n)


def _lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def _child(fmt: str, path: str, n: int, out_dir: str) -> None:
    out = Path(out_dir)
    t0 = time.perf_counter()
    if fmt == "read-only":
        count = sum(1 for _ in _rows(path, n))
    elif fmt == "import-tracelab":
        from tracetap.importers.tracelab import import_rows

        count = import_rows(
            f"sqlite:///{out.parent / 'store.db'}", _rows(path, n), source="tracelab"
        )
    elif fmt == "store-tracelab":
        from tracetap.exporters.tracelab import iter_rows
        from tracetap.tracelab import write_rows

        with open(out / "t.jsonl", "w") as fh:
            count = write_rows(iter_rows(f"sqlite:///{path}"), fh)
    elif fmt.startswith("tracelab") and fmt != "tracelab-duckdb":
        from tracetap.tracelab import write_rows

        rows = ({k: v for k, v in r.items() if not k.startswith("tt_")} for r in _rows(path, n))
        if fmt == "tracelab-public":
            from tracetap.exporters.public import Pseudonymizer, sanitize_row

            ps = Pseudonymizer(b"b" * 32)
            rows = (sanitize_row(r, ps) for r in rows)
        with open(out / "t.jsonl", "w") as fh:
            count = write_rows(rows, fh)
    elif fmt == "tracelab-duckdb":
        from tracetap.exporters import duckdb_file

        count = duckdb_file.export(_rows(path, n), out / "t.duckdb", source_path=path)
    elif fmt == "parquet":
        from tracetap.exporters import parquet

        count = parquet.export(_rows(path, n), out / "pq")
    elif fmt in ("replay-csv", "mooncake", "atif", "otel"):
        import importlib

        mod = importlib.import_module(f"tracetap.exporters.{fmt.replace('-', '_')}")
        with open(out / f"{fmt}.out", "w") as fh:
            mod.export(_rows(path, n), fh)
        count = (
            min(n, _lines(Path(path)))
            if fmt in ("atif", "otel")
            else _lines(out / f"{fmt}.out") - (fmt == "replay-csv")
        )
    else:
        from tracetap.importers import claude_code, codex

        parser = claude_code if fmt == "log-claude-code" else codex
        count = sum(1 for _ in parser.rows_from_dir(Path(path)))
    elapsed = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": count, "seconds": elapsed, "peak_rss_mb": rss}))


def _make_logs(root: Path, copies: int) -> tuple[Path, Path]:
    """`copies` Claude Code sessions and Codex rollouts made from the test logs."""
    claude_dir, codex_dir = root / "claude", root / "codex"
    claude_dir.mkdir(parents=True)
    codex_dir.mkdir(parents=True)
    c_text = (DATA / "claude_session.jsonl").read_text()
    x_text = (DATA / "codex_rollout.jsonl").read_text()
    for i in range(copies):
        (claude_dir / f"s{i}.jsonl").write_text(
            "".join(
                c_text.replace("5f0c2a7e-1b3d-4c8e-9a61-7d2e4f8b0c11", f"5f0c2a7e-{i:04d}-{j:02d}")
                for j in range(20)
            )
        )
        (codex_dir / f"rollout-{i}.jsonl").write_text(
            x_text.replace("0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", f"0199-{i:04d}")
        )
    return claude_dir, codex_dir


def _verify(path: str, n: int) -> dict[str, str]:
    """Read each format back with the library that owns it."""
    import importlib.util

    import duckdb
    import pyarrow.dataset as ds
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tracetap.exporters import atif, duckdb_file, mooncake, otel, parquet

    rows = list(_rows(path, n))
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        duckdb_file.export(rows, f"{tmp}/t.duckdb")
        con = duckdb.connect(f"{tmp}/t.duckdb", read_only=True)
        found["tracelab-duckdb"] = f"duckdb {duckdb.__version__}: " + ", ".join(
            f"{t}={con.execute(f'SELECT count(*) FROM {t}').fetchone()[0]}"
            for t in ("rounds", "tool_calls", "timing_events")
        )
        parquet.export(rows, f"{tmp}/pq")
        found["parquet"] = "pyarrow.dataset: rounds=" + str(
            ds.dataset(f"{tmp}/pq/rounds", partitioning="hive").count_rows()
        )
        buf = io.StringIO()
        otel.export(rows, buf)
        spans = sum(
            len(
                json_format.Parse(line, ExportTraceServiceRequest())
                .resource_spans[0]
                .scope_spans[0]
                .spans
            )
            for line in buf.getvalue().splitlines()
        )
        found["otel"] = f"opentelemetry-proto json_format.Parse: {spans} spans"
        buf = io.StringIO()
        mooncake.export(rows, buf)
        if importlib.util.find_spec("aiperf"):
            spec = importlib.util.find_spec("aiperf")
            base = Path(next(iter(spec.submodule_search_locations)))
            found["mooncake"] = _aiperf_checks(base, buf.getvalue(), rows)
        else:
            found["mooncake"] = "aiperf not on PYTHONPATH (not verified externally)"
        if importlib.util.find_spec("harbor"):
            from harbor.models.trajectories import Trajectory

            k = sum(1 for t in atif.trajectories(rows) if Trajectory.model_validate(t))
            found["atif"] = f"harbor Trajectory.model_validate: {k} trajectories"
        else:
            found["atif"] = "harbor not on PYTHONPATH (not verified externally)"
    return found


def _aiperf_checks(base: Path, mooncake_text: str, rows: list[dict]) -> str:
    """AIPerf's TraceLab converter on the rows, and mooncake lines vs its block layouts."""
    import importlib.util
    from collections import defaultdict

    spec = importlib.util.spec_from_file_location(
        "aiperf_tracelab_convert", base / "dataset" / "loader" / "_tracelab_convert.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    sessions: dict[str, list] = defaultdict(list)
    for r in rows:
        sessions[r["session_id"]].append(r)
    traces = [mod.build_trace(sid, rs, 64) for sid, rs in sessions.items()]
    lines = [json.loads(x) for x in mooncake_text.splitlines()]
    ok = all(
        (len(x["hash_ids"]) - 1) * 512 < x["input_length"] <= len(x["hash_ids"]) * 512
        for x in lines
        if x["hash_ids"]
    )
    return (
        f"aiperf tracelab converter: {sum(1 for t in traces if t)} session traces; "
        f"mooncake 'last block partial' layout {'ok' if ok else 'VIOLATED'}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=357161)
    ap.add_argument(
        "--input",
        help="TraceLab JSONL (default: bench/results/gen_<n>.jsonl, generated when missing)",
    )
    ap.add_argument(
        "--log-copies",
        type=int,
        default=2000,
        help="log files for each parser (80 and 3 rounds each)",
    )
    ap.add_argument("--only", nargs="*", choices=FORMATS)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fmt, path, n, out = args.child
        _child(fmt, path, int(n), out)
        return 0
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    path = Path(args.input) if args.input else results_dir / f"gen_{args.rounds}.jsonl"
    if not path.exists():
        from gen_tracelab import generate

        from tracetap.tracelab import write_rows

        with open(path, "w") as fh:
            write_rows(generate(args.rounds, seed=0), fh)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        claude_dir, codex_dir = _make_logs(Path(tmp) / "logs", args.log_copies)
        for fmt in args.only or FORMATS:
            out = Path(tmp) / fmt
            out.mkdir()
            src = {
                "log-claude-code": claude_dir,
                "log-codex": codex_dir,
                "store-tracelab": Path(tmp) / "store.db",
            }.get(fmt, path)
            if fmt == "store-tracelab" and not src.exists():
                print("store-tracelab needs import-tracelab first", file=sys.stderr)
                return 2
            proc = subprocess.run(
                [sys.executable, __file__, "--child", fmt, str(src), str(args.rounds), str(out)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            results[fmt] = json.loads(proc.stdout.strip().splitlines()[-1])
            shutil.rmtree(out)
    base = results.get("read-only")
    print(f"{'format':<18}{'rows':>9}{'seconds':>9}{'rows/s':>10}{'x read':>8}{'peak MB':>9}")
    for fmt, r in results.items():
        rate = r["rows"] / r["seconds"] if r["seconds"] else 0.0
        ratio = (
            r["seconds"] / base["seconds"]
            if base and not fmt.startswith("log") and fmt != "store-tracelab"
            else None
        )
        r["rows_per_s"] = rate
        r["x_read_only"] = ratio
        print(
            f"{fmt:<18}{r['rows']:>9,}{r['seconds']:>9.1f}{rate:>10,.0f}"
            f"{'' if ratio is None else f'{ratio:.2f}':>8}{r['peak_rss_mb']:>9.0f}"
        )
    readers = _verify(str(path), 3000)
    for fmt, what in readers.items():
        print(f"verified {fmt}: {what}")
    (results_dir / "export_import.json").write_text(
        json.dumps(
            {
                "input": str(path),
                "rounds": args.rounds,
                "results": results,
                "external_readers": readers,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
