"""Replay pacing: dispatch lateness and achieved vs scheduled request rate of `tracetap replay`
(closed loop) at 100 and 1,000 concurrent sessions against serve-sim in a separate process.

Each session sends ROUNDS rounds (PROMPT tokens, OUTPUT tokens, PREFIX reused) with WAIT seconds
of recorded tool time between them; session starts are spread over one WAIT. Baselines in the
same run, to the same deadlines with no HTTP at all: bare `asyncio.sleep` on asyncio's default
loop, and replay's own wait (pacing.Pacer) on the loop replay runs on. `others` is the CPU
(cores) that processes other than the replay and serve-sim used meanwhile: the machine is shared.
Run: python bench/replay_pacing.py [--sessions 100 1000] [--rounds 5] [--repeat 3] [--loop asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from tracetap.replay.pacing import Pacer, loop_factory, now
from tracetap.replay.plan import Plan, PlanRound, PlanSession
from tracetap.replay.runner import ReplayConfig, run_replay

PROMPT, PREFIX, OUTPUT, WAIT = 512, 448, 4, 1.0


def make_plan(n_sessions: int, rounds: int) -> Plan:
    sessions = []
    for s in range(n_sessions):
        start = WAIT * s / n_sessions
        rs = [
            PlanRound(
                index=i,
                prefix_len=0 if i == 0 else PREFIX,
                append_len=PROMPT if i == 0 else PROMPT - PREFIX,
                output_len=OUTPUT,
                at=start + i * WAIT,
                tool_wait=WAIT,
            )
            for i in range(rounds)
        ]
        sessions.append(PlanSession(f"s{s}", rs))
    return Plan(sessions, "bench")


async def bare_lateness(n_sessions: int, rounds: int) -> list[float]:
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    late: list[float] = []

    async def one(start: float) -> None:
        deadline = t0 + start
        for _ in range(rounds):
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            late.append((now - deadline) * 1000)
            deadline = now + WAIT

    await asyncio.gather(*(one(WAIT * s / n_sessions) for s in range(n_sessions)))
    return late


async def pacer_lateness(n_sessions: int, rounds: int) -> list[float]:
    """The same deadlines waited for with replay's own Pacer."""
    pacer = Pacer(asyncio.get_running_loop())
    t0 = now() + 0.2
    late: list[float] = []

    async def one(start: float) -> None:
        deadline = t0 + start
        for _ in range(rounds):
            await pacer.sleep_until(deadline)
            t = now()
            late.append((t - deadline) * 1000)
            deadline = t + WAIT

    try:
        await asyncio.gather(*(one(WAIT * s / n_sessions) for s in range(n_sessions)))
    finally:
        pacer.close()
    return late


def _busy_cpu() -> float | None:
    """CPU seconds the whole machine has been busy (Linux /proc/stat), None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server() -> tuple[int, subprocess.Popen[bytes]]:
    """serve-sim on a free port, once it answers /health."""
    port = _port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tracetap"),
            "serve-sim",
            "--port",
            str(port),
            "--block-size",
            "16",
        ],
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return port, server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("serve-sim did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per size (the machine is shared: spread shows neighbour noise)",
    )
    ap.add_argument(
        "--loop",
        choices=["auto", "asyncio"],
        default="auto",
        help="event loop of the replay and of the Pacer baseline (auto: as "
        "`tracetap replay`, uvloop where installed)",
    )
    args = ap.parse_args()
    factory = loop_factory() if args.loop == "auto" else None
    loop_name = "asyncio" if factory is None else "uvloop"
    rows = []
    for n in [n for n in args.sessions for _ in range(args.repeat)]:
        port, server = _start_server()  # a fresh cache per run: `hit` counts this run's reuse
        try:
            plan = make_plan(n, args.rounds)
            cfg = ReplayConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", start_delay=0.5)
            busy, others = _busy_cpu(), None
            own = time.process_time() + _proc_cpu(server.pid) if busy is not None else 0.0
            start = time.monotonic()
            results, summary = asyncio.run(run_replay(plan, cfg), loop_factory=factory)
            wall = time.monotonic() - start
            if busy is not None:
                own = time.process_time() + _proc_cpu(server.pid) - own
                others = max(0.0, (_busy_cpu() - busy - own) / wall)
            late = np.asarray([r.lateness_ms for r in results if r.lateness_ms is not None])
            bare = np.asarray(asyncio.run(bare_lateness(n, args.rounds)))
            paced = np.asarray(asyncio.run(pacer_lateness(n, args.rounds), loop_factory=factory))
            rows.append(
                {
                    "sessions": n,
                    "rounds": len(results),
                    "errors": summary["errors"],
                    "lateness_p50_ms": float(np.percentile(late, 50)),
                    "lateness_p99_ms": float(np.percentile(late, 99)),
                    "lateness_max_ms": float(late.max()),
                    "pacer_p99_ms": float(np.percentile(paced, 99)),
                    "bare_sleep_p50_ms": float(np.percentile(bare, 50)),
                    "bare_sleep_p99_ms": float(np.percentile(bare, 99)),
                    "achieved_rate": summary["achieved_rate_per_s"],
                    "scheduled_rate": summary["scheduled_rate_per_s"],
                    "ttft_p50_ms": summary["ttft_ms"]["p50"] if summary["ttft_ms"] else None,
                    "server_hit_rate": summary["server_hit_rate"],
                    "others_cpu_cores": others,
                }
            )
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(
        f"replay loop: {loop_name}; deadlines timed by "
        f"{'timerfd' if Pacer.available() else 'loop timers'}"
    )
    print(
        f"{'sessions':>8} {'rounds':>6} {'err':>4} {'late p50':>9} {'late p99':>9} "
        f"{'late max':>9} {'pacer p99':>9} {'bare p99':>9} {'rate':>8} {'sched':>8} "
        f"{'ttft p50':>9} {'hit':>6} {'others':>6}"
    )
    for r in rows:
        others = "-" if r["others_cpu_cores"] is None else f"{r['others_cpu_cores']:.2f}"
        print(
            f"{r['sessions']:>8} {r['rounds']:>6} {r['errors']:>4} {r['lateness_p50_ms']:>9.3f} "
            f"{r['lateness_p99_ms']:>9.3f} {r['lateness_max_ms']:>9.3f} "
            f"{r['pacer_p99_ms']:>9.3f} {r['bare_sleep_p99_ms']:>9.3f} "
            f"{r['achieved_rate']:>8.1f} {r['scheduled_rate']:>8.1f} "
            f"{r['ttft_p50_ms'] or 0:>9.2f} {(r['server_hit_rate'] or 0):>6.1%} {others:>6}"
        )
    out = Path(__file__).parent / "results" / "replay_pacing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "time": time.time(),
                "loop": loop_name,
                "timerfd": Pacer.available(),
                "rounds_per_session": args.rounds,
                "prompt": PROMPT,
                "prefix": PREFIX,
                "output": OUTPUT,
                "wait_s": WAIT,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
