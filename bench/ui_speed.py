"""How fast `tracetap ui` answers on a large store: the sessions page and a 500-round session.

Builds (once, cached under /tmp) a SQLite store of 357k imported TraceLab rounds, copies of
tests/fixtures/tracelab_sample.jsonl's sessions with fresh ids and shifted times plus one session
of 500 rounds; then starts `tracetap ui` on it and times each page's data answer (median of
several requests; targets: sessions page < 200 ms, 500-round session page < 1 s), and the time
until headless Chromium shows each page in full. Writes bench/results/ui_speed.json.

Run: .venv/bin/python bench/ui_speed.py [--rounds 357000] [--store /tmp/tracetap-ui-bench.db]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tracetap.importers.tracelab import import_rows  # noqa: E402
from tracetap.tracelab import parse_ts  # noqa: E402

FIXTURE = ROOT / "tests/fixtures/tracelab_sample.jsonl"
LONG_SESSION = 500
LONG_ID = "ui-bench-long-session"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _shift(value: Any, dt: float) -> Any:
    t = parse_ts(value) if isinstance(value, str) else None
    return value if t is None else _iso(t + dt)


def _copy(row: dict[str, Any], *, session: str, index: int, dt: float) -> dict[str, Any]:
    """`row` as round `index` of `session`, `dt` seconds later, with ids of its own."""
    out = copy.deepcopy(row)
    provider = out["provider"]
    out["session_id"] = f"{provider}:{session}"
    out["round_index"] = index
    out["round_id"] = f"{session}:{index}"
    out["trace_key"] = f"{provider}:{session}:{index}"
    for e in out.get("timing_events") or []:
        e["timestamp"] = _shift(e.get("timestamp"), dt)
    for t in out.get("tools") or []:
        t["emitted_at"] = _shift(t.get("emitted_at"), dt)
        t["result_at"] = _shift(t.get("result_at"), dt)
        if t.get("tool_call_id"):
            t["tool_call_id"] = f"{t['tool_call_id']}-{session}-{index}"
    for e in out.get("timing_events") or []:
        if e.get("tool_call_id"):
            e["tool_call_id"] = f"{e['tool_call_id']}-{session}-{index}"
    return out


def _sessions(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["session_id"], []).append(r)
    return [sorted(v, key=lambda r: r["round_index"]) for v in by.values()]


def bench_rows(total: int) -> Iterator[dict[str, Any]]:
    """`total` rows: one session of LONG_SESSION rounds, then copies of the fixture's sessions
    spread over 90 days (each copy starts an hour after the one before, wrapping)."""
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    sessions = _sessions(rows)
    base = sessions[0]
    span = parse_ts(base[-1]["timing_events"][-1]["timestamp"]) - parse_ts(
        base[0]["timing_events"][0]["timestamp"]
    )
    step = span + 60.0
    for i in range(LONG_SESSION):
        yield _copy(base[i % len(base)], session=LONG_ID, index=i, dt=(i // len(base)) * step)
    made = LONG_SESSION
    n = 0
    while made < total:
        src = sessions[n % len(sessions)]
        dt = -((n * 3600.0) % (90 * 86400.0))
        for j, row in enumerate(src):
            if made >= total:
                break
            yield _copy(row, session=f"bench-{n:07d}", index=j, dt=dt)
            made += 1
        n += 1


def build(store: Path, total: int) -> None:
    """The bench store at `store`, built when it is missing (a partial build is removed)."""
    if store.exists():
        return
    part = store.with_suffix(".part")
    for leftover in (part, Path(f"{part}-wal"), Path(f"{part}-shm")):
        leftover.unlink(missing_ok=True)
    started = time.perf_counter()
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        if sys.stderr.isatty():
            rate = done[0] / (time.perf_counter() - started)
            eta = (total - done[0]) / rate if rate else 0
            print(
                f"\rbuilding: {done[0] / total:6.1%}  {rate:,.0f} rows/s  ETA {eta:,.0f} s",
                end="",
                file=sys.stderr,
            )

    import_rows(f"sqlite:///{part}", bench_rows(total), source="ui-bench", progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    os.replace(part, store)
    print(f"built {store} ({total:,} rounds) in {time.perf_counter() - started:.0f} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _median_ms(client: httpx.Client, url: str, runs: int) -> float:
    client.get(url).raise_for_status()  # warm: the first answer also fills SQLite's page cache
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        client.get(url).raise_for_status()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _rendered_ms(base: str, ref: str, runs: int) -> dict[str, float]:
    """Median wall time until headless Chromium (Debian's, via Playwright) shows the sessions
    page's rows and every bar of the long session's waterfall and table."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import chromium_path

    out: dict[str, float] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for name, url, ready in (
            ("sessions_rendered_ms", "/", "tr.session-row >> nth=99"),
            ("session_500_rendered_ms", f"/session/{ref}", f".wf-bar >> nth={LONG_SESSION - 1}"),
        ):
            page.goto(base + url)  # warm
            page.wait_for_selector(ready)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                page.goto(base + url)
                page.wait_for_selector(ready)
                times.append((time.perf_counter() - t) * 1000)
            out[name] = statistics.median(times)
        browser.close()
    return out


def measure(store: Path, runs: int) -> dict[str, float]:
    """Start `tracetap ui` on the store; the median answer times (ms) of its pages' data."""
    port = _free_port()
    cmd = [sys.executable, "-m", "tracetap", "ui", "--db", f"sqlite:///{store}"]
    proc = subprocess.Popen([*cmd, "--port", str(port)], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            for _ in range(200):
                try:
                    client.get("/api/latest")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            long = client.get("/api/sessions", params={"q": LONG_ID}).json()["sessions"]
            ref = long[0]["ref"]
            rendered = _rendered_ms(base, ref, runs)
            return {
                **rendered,
                "sessions_page_ms": _median_ms(client, "/", runs)
                + _median_ms(client, "/api/sessions", runs),
                "session_page_500_ms": _median_ms(client, f"/session/{ref}", runs)
                + _median_ms(client, f"/api/session/{ref}", runs),
                "filtered_agent_ms": _median_ms(client, "/api/sessions?agent=codex", runs),
                "filtered_prefix_ms": _median_ms(client, "/api/sessions?q=bench-001", runs),
                "rounds_in_long_session": float(long[0]["rounds"]),
            }
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=357_000)
    ap.add_argument("--store", type=Path, default=Path("/tmp/tracetap-ui-bench.db"))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "bench/results/ui_speed.json")
    args = ap.parse_args()
    build(args.store, args.rounds)
    got = measure(args.store, args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rounds": args.rounds, **got}, indent=2) + "\n")
    print(f"store                     {args.store} ({args.rounds:,} rounds)")
    print(f"sessions page             {got['sessions_page_ms']:.0f} ms   (target < 200 ms)")
    print(f"  rendered in Chromium    {got['sessions_rendered_ms']:.0f} ms")
    print(f"  filtered by agent       {got['filtered_agent_ms']:.0f} ms   (data only)")
    print(f"  by session id prefix    {got['filtered_prefix_ms']:.0f} ms   (data only)")
    print(
        f"session page, {got['rounds_in_long_session']:.0f} rounds  "
        f"{got['session_page_500_ms']:.0f} ms   (target < 1000 ms)"
    )
    print(f"  rendered in Chromium    {got['session_500_rendered_ms']:.0f} ms")


if __name__ == "__main__":
    main()
