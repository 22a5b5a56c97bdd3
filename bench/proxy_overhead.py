"""Proxy overhead: direct vs plain mitmproxy (streaming) vs `tracetap proxy` recording everything.

Also plain mitmproxy with the allocator settings tracetap applies to itself ("mitm+malloc"), so
the addon's own cost is visible apart from the allocator's gain.

Run: python bench/proxy_overhead.py [--requests N --rounds N --throughput-rounds N]. Prints a
table; writes bench/results/proxy_overhead.json. Ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

from tracetap import allocator

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User+system CPU of a process, and of its children (tracetap's ingest process)."""
    tick = os.sysconf("SC_CLK_TCK")

    def one_pid(p: int | str) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return one_pid(pid), sum(one_pid(k) for k in kids)


def interleaved(targets: dict[str, str], r: int) -> list[str]:
    """The targets in round `r`'s order: reversed every other round, so no target always
    runs right after the same one."""
    return list(targets) if r % 2 == 0 else list(reversed(targets))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(allocator.MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(allocator.TRIM_THRESHOLD),
    "MALLOC_TOP_PAD_": str(allocator.TOP_PAD),
}

PROMPT = {
    "model": "bench",
    "max_tokens": 4096,
    "stream": True,
    "system": "You are a coding agent. " * 200,
    "messages": [{"role": "user", "content": "tool output line\n" * 5000}],
}


async def one(session: aiohttp.ClientSession, url: str, bench: dict) -> tuple[float, float, int]:
    body = dict(PROMPT, bench=bench)
    t0 = time.perf_counter()
    async with session.post(url + "/v1/messages", json=body) as resp:
        first = None
        n = 0
        async for chunk in resp.content.iter_any():
            if first is None:
                first = time.perf_counter()
            n += len(chunk)
        end = time.perf_counter()
    return (first or end) - t0, end - t0, n


async def latency(url: str, n: int) -> dict:
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        for _ in range(20):
            await one(s, url, {"events": 20, "gap_ms": 1})
        ttfb, ttlb = [], []
        for _ in range(n):
            a, b, _ = await one(s, url, {"events": 50, "gap_ms": 1})
            ttfb.append(a * 1000)
            ttlb.append(b * 1000)
    return {
        "ttfb_p50": pct(ttfb, 0.5),
        "ttfb_p99": pct(ttfb, 0.99),
        "ttlb_p50": pct(ttlb, 0.5),
        "ttlb_p99": pct(ttlb, 0.99),
    }


async def throughput(url: str, concurrency: int, per_worker: int, gap_ms: float) -> float:
    """Completed streams per second, each 100 events `gap_ms` apart (0: unpaced stress)."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker() -> int:
            total = 0
            for _ in range(per_worker):
                total += (await one(s, url, {"events": 100, "gap_ms": gap_ms}))[2]
            return total

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return concurrency * per_worker / (time.perf_counter() - t0)


async def big_stream(url: str, pid: int, nbytes: int) -> dict:
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mb(pid))
            time.sleep(0.05)

    before = rss_mb(pid)
    th = threading.Thread(target=sample)
    th.start()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        _, secs, got = await one(s, url, {"bytes": nbytes})
    await asyncio.sleep(1.0)
    stop.set()
    th.join()
    return {
        "rss_before_mb": before,
        "rss_peak_mb": max(samples or [before]),
        "rss_after_mb": rss_mb(pid),
        "mb_per_s": got / secs / 1e6,
        "bytes": got,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="latency runs per target, interleaved (the median is reported)",
    )
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument(
        "--throughput-rounds",
        type=int,
        default=3,
        help="throughput runs per target and concurrency, interleaved (medians)",
    )
    ap.add_argument(
        "--tracetap-args",
        default="",
        help="extra `tracetap proxy` options, e.g. '--content full --tokenizer off'",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tt-bench-"))
    procs: list[subprocess.Popen] = []
    up = free_port()
    procs.append(
        subprocess.Popen([sys.executable, str(ROOT / "bench" / "sse_upstream.py"), str(up)])
    )
    wait_port(up)
    mitm_port, tuned_port, tt_port = free_port(), free_port(), free_port()
    mitmdump = str(Path(sys.executable).with_name("mitmdump"))

    def plain_mitmproxy(port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [
                mitmdump,
                "-q",
                "--mode",
                f"reverse:http://127.0.0.1:{up}@{port}",
                "--set",
                "stream_large_bodies=1",
                "--set",
                f"confdir={tmp / 'mitm'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    procs.append(plain_mitmproxy(mitm_port))
    # The same allocator settings `tracetap proxy` applies to itself (tracetap.allocator), so
    # the addon's own cost can be read apart from the allocator's gain.
    procs.append(plain_mitmproxy(tuned_port, dict(os.environ, **MALLOC_ENV)))
    tt = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracetap",
            "proxy",
            "--db",
            f"sqlite:///{tmp / 'tt.db'}",
            "--anthropic-port",
            str(tt_port),
            "--anthropic-upstream",
            f"http://127.0.0.1:{up}",
            "--openai-port",
            "0",
            "--journal-dir",
            str(tmp / "journal"),
            "--confdir",
            str(tmp / "mitm2"),
            "--quiet",
            *args.tracetap_args.split(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(tt)
    for p in (mitm_port, tuned_port, tt_port):
        wait_port(p)
    targets = {
        "direct": f"http://127.0.0.1:{up}",
        "mitmproxy": f"http://127.0.0.1:{mitm_port}",
        "mitm+malloc": f"http://127.0.0.1:{tuned_port}",
        "tracetap": f"http://127.0.0.1:{tt_port}",
    }
    pids = {"mitmproxy": procs[1].pid, "mitm+malloc": procs[2].pid, "tracetap": tt.pid}
    results: dict = {"latency": {}, "throughput": {}, "rss": {}}
    try:
        # Interleave targets in rounds so machine noise hits all three alike.
        lat: dict[str, list[dict]] = {k: [] for k in targets}
        for r in range(args.rounds):
            for name in interleaved(targets, r):
                url = targets[name]
                lat[name].append(asyncio.run(latency(url, max(1, args.requests // args.rounds))))
        results["latency_runs"] = {
            name: [r["ttfb_p50"] for r in runs] for name, runs in lat.items()
        }
        for name, runs in lat.items():
            results["latency"][name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        # Paced like fast real decoding (5 ms/event = 200 tok/s), then an unpaced stress run.
        # CPU per stream counts the proxy and its children (tracetap's ingest process), with
        # a pause after each run so deferred ingest work is included.
        # Each concurrency runs in `--throughput-rounds` rounds, the targets' order reversed
        # every other round; a target's figure is its median, a ratio the median of the
        # rounds' ratios (single runs of two identical proxies differ more than what is measured).
        cpu: dict[str, list[float]] = {k: [0.0, 0.0, 0] for k in pids}
        runs: dict[str, dict[str, list[float]]] = {}
        n_rounds = max(1, args.throughput_rounds)
        for label, c, gap in (("1", 1, 5), ("10", 10, 5), ("100", 100, 5), ("10-unpaced", 10, 0)):
            per = max(3, 60 // c // n_rounds) if gap else max(3, 20 // n_rounds)
            runs[label] = {name: [] for name in targets}
            for r in range(n_rounds):
                for name in interleaved(targets, r):
                    before = cpu_seconds(pids[name]) if name in pids else (0.0, 0.0)
                    runs[label][name].append(asyncio.run(throughput(targets[name], c, per, gap)))
                    if name in pids:
                        time.sleep(2.0)
                        after = cpu_seconds(pids[name])
                        cpu[name][0] += after[0] - before[0]
                        cpu[name][1] += after[1] - before[1]
                        cpu[name][2] += c * per
            results["throughput"][label] = {
                name: statistics.median(v) for name, v in runs[label].items()
            }
        results["throughput_runs"] = runs
        results["cpu_ms_per_stream"] = {
            k: {"proxy": 1000 * v[0] / v[2], "children": 1000 * v[1] / v[2]} for k, v in cpu.items()
        }
        for name in ("mitmproxy", "tracetap"):
            results["rss"][name] = asyncio.run(
                big_stream(targets[name], pids[name], args.big_mb * 1_000_000)
            )
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
    lat, thr = results["latency"], results["throughput"]
    results["ratios"] = {
        f"tracetap_over_{base}": {
            "ttfb_p50": statistics.median(
                map(
                    operator.truediv,
                    results["latency_runs"]["tracetap"],
                    results["latency_runs"][base],
                )
            ),
            "ttfb_p50_diff_ms": lat["tracetap"]["ttfb_p50"] - lat[base]["ttfb_p50"],
            "throughput": {
                c: statistics.median(map(operator.truediv, v["tracetap"], v[base]))
                for c, v in results["throughput_runs"].items()
            },
        }
        for base in ("mitmproxy", "mitm+malloc", "direct")
    }
    print(f"{'target':<12} {'TTFB p50':>9} {'TTFB p99':>9} {'TTLB p50':>9} {'TTLB p99':>9}  (ms)")
    for name, v in lat.items():
        print(
            f"{name:<12} {v['ttfb_p50']:9.2f} {v['ttfb_p99']:9.2f} {v['ttlb_p50']:9.2f} "
            f"{v['ttlb_p99']:9.2f}"
        )
    print(
        f"\nthroughput (streams/s, median of {n_rounds} rounds; 100 events, 5 ms apart, "
        "except 'unpaced'):"
    )
    for c, v in thr.items():
        print(f"  {c:>10} concurrent: " + ", ".join(f"{k} {x:.1f}" for k, x in v.items()))
    print(
        "\nCPU per stream in the throughput runs (ms; proxy process + its children): "
        + ", ".join(
            f"{k} {v['proxy']:.2f} + {v['children']:.2f}"
            for k, v in results["cpu_ms_per_stream"].items()
        )
    )
    print("\nRSS while a large response streams (MB):")
    for name, v in results["rss"].items():
        print(
            f"  {name:<10} before {v['rss_before_mb']:.0f}  peak {v['rss_peak_mb']:.0f}  "
            f"after {v['rss_after_mb']:.0f}  ({v['mb_per_s']:.0f} MB/s)"
        )
    print()
    for base in ("mitmproxy", "mitm+malloc", "direct"):
        r = results["ratios"][f"tracetap_over_{base}"]
        print(
            f"tracetap/{base}: TTFB p50 {r['ttfb_p50']:.3f} ({r['ttfb_p50_diff_ms']:+.2f} ms); "
            "throughput " + ", ".join(f"{c}: {x:.2f}" for c, x in r["throughput"].items())
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "proxy_overhead.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
