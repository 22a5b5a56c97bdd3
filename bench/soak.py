"""Soak: many concurrent streaming clients for a long while, with faults, against `tracetap proxy`
and, on the same clients, plain mitmproxy for the added-latency baseline.

Each client loops: one streamed request (`--events` SSE events `--gap-ms` apart, a ~10 kB
prompt), a pause of `--think` seconds, alternating between tracetap and plain mitmproxy (so both
see the same load). Every `--fault-every` seconds one fault, in turn: kill -9 of the ingest child
process; the SQLite store locked (BEGIN EXCLUSIVE) for `--fault-seconds`; the journal directory's
disk filled for `--fault-seconds` (only when the journal is on a tmpfs this script mounted, which
needs root; else that fault is skipped, and the table says so). At the end the clients stop, the
proxy gets SIGTERM, and the store is compared with what the clients saw complete, id by id.

Run: python bench/soak.py [--streams 200] [--seconds 600] [--fault-every 60]. Prints one table,
writes bench/results/soak.json, exits 1 when a completed request is not stored. Loopback only;
stops by itself (at most --seconds + about 4 minutes, however the proxy behaves).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))

from proxy_overhead import free_port, pct, rss_mb, wait_port  # noqa: E402

PROMPT_SYSTEM = "You are a coding agent working in a repository. " * 40
PROMPT_TOOL_OUTPUT = "src/module.py:12: def handler(request): return respond(request)\n" * 120
STOP_GRACE = 30.0  # seconds the clients get to finish their streams at the end
PROXY_STOP = 120.0  # seconds the proxy gets to exit after SIGTERM, then SIGKILL

_libc = ctypes.CDLL(None, use_errno=True)


def fds(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def rss(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return rss_mb(pid)
    except OSError:
        return None


def ingest_pid(proxy_pid: int) -> int | None:
    """The proxy's spawned ingest process (not multiprocessing's resource tracker)."""
    try:
        tasks = list(Path(f"/proc/{proxy_pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            try:
                if b"spawn_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                    return int(kid)
            except OSError:
                continue
    return None


def mount_tmpfs(where: Path, size: str) -> str | None:
    """Mount a tmpfs on `where`; None when done, else why not."""
    where.mkdir(parents=True, exist_ok=True)
    rc = _libc.mount(b"tmpfs", os.fsencode(where), b"tmpfs", 0, f"size={size},mode=0700".encode())
    if rc == 0:
        return None
    err = ctypes.get_errno()
    return f"mount tmpfs: {os.strerror(err)}" + (" (needs root)" if err == errno.EPERM else "")


def umount(where: Path) -> None:
    if _libc.umount2(os.fsencode(where), 0) != 0:
        _libc.umount2(os.fsencode(where), 2)  # MNT_DETACH: still busy


def fill(ballast: Path) -> int:
    """Write `ballast` until its disk is full; its size."""
    chunk = b"\0" * (1 << 20)
    written = 0
    with open(ballast, "wb", buffering=0) as fh:
        for size in (1 << 20, 65536, 4096, 1):
            try:
                while True:
                    written += fh.write(chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return written


class Stats:
    def __init__(self) -> None:
        self.completed: dict[str, list[str]] = {"tracetap": [], "mitmproxy": []}
        self.failed: dict[str, list[str]] = {"tracetap": [], "mitmproxy": []}
        self.ttfb: dict[str, list[float]] = {"tracetap": [], "mitmproxy": []}
        self.ttlb: dict[str, list[float]] = {"tracetap": [], "mitmproxy": []}


async def one(
    session: aiohttp.ClientSession, url: str, msg_id: str, events: int, gap_ms: float
) -> tuple[float, float]:
    """One streamed request; its TTFB and TTLB (s). Raises unless the stream ended with
    message_stop."""
    body = {
        "model": "bench",
        "max_tokens": 4096,
        "stream": True,
        "system": PROMPT_SYSTEM,
        "messages": [{"role": "user", "content": f"{msg_id}\n{PROMPT_TOOL_OUTPUT}"}],
        "bench": {"events": events, "gap_ms": gap_ms, "id": msg_id},
    }
    t0 = time.perf_counter()
    first = None
    tail = b""
    async with session.post(url + "/v1/messages", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        async for chunk in resp.content.iter_any():
            if first is None:
                first = time.perf_counter()
            tail = (tail + chunk)[-200:]
    end = time.perf_counter()
    if b"message_stop" not in tail:
        raise RuntimeError("stream ended early")
    return (first or end) - t0, end - t0


async def client(
    n: int,
    targets: dict[str, str],
    stats: Stats,
    stop_at: float,
    args: argparse.Namespace,
) -> None:
    rng = random.Random(n)
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    names = list(targets)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        await asyncio.sleep(rng.uniform(0, args.think))  # spread the starts
        i = 0
        while time.monotonic() < stop_at:
            name = names[(n + i) % 2]
            msg_id = f"msg_soak_{n}_{i}"
            try:
                ttfb, ttlb = await one(session, targets[name], msg_id, args.events, args.gap_ms)
            except Exception as exc:
                stats.failed[name].append(f"{msg_id}: {type(exc).__name__}: {exc}")
            else:
                stats.completed[name].append(msg_id)
                stats.ttfb[name].append(ttfb * 1000)
                stats.ttlb[name].append(ttlb * 1000)
            i += 1
            await asyncio.sleep(rng.uniform(0.5, 1.5) * args.think)


class Faults:
    """Injects one fault every `every` seconds, in turn, from a thread."""

    def __init__(
        self,
        proxy_pid: int,
        db: Path,
        disk: Path | None,
        no_disk: str | None,
        args: argparse.Namespace,
        t_end: float,
    ) -> None:
        self.t_end = t_end
        self.proxy_pid = proxy_pid
        self.db = db
        self.disk = disk
        self.no_disk = no_disk
        self.args = args
        self.log: list[dict[str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> Faults:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        kinds = ["kill_ingest", "lock_sqlite", "disk_full"]
        every, hold = self.args.fault_every, self.args.fault_seconds
        k = 0
        while True:  # fault k at (k + 1) * every seconds, each over before the end
            due = self._t0 + (k + 1) * every
            if due + hold + 5 > self.t_end or self._stop.wait(max(0.0, due - time.monotonic())):
                return
            kind = kinds[k % len(kinds)]
            k += 1
            at = round(time.monotonic() - self._t0, 1)
            try:
                detail = getattr(self, kind)(hold)
            except Exception as exc:
                detail = f"failed: {type(exc).__name__}: {exc}"
            self.log.append({"at_s": at, "fault": kind, "detail": detail})
            print(f"[{at:7.1f} s] {kind}: {detail}", flush=True)

    def kill_ingest(self, _hold: float) -> str:
        pid = ingest_pid(self.proxy_pid)
        if pid is None:
            return "skipped: no ingest process running (being restarted)"
        os.kill(pid, signal.SIGKILL)
        return f"killed pid {pid}"

    def lock_sqlite(self, hold: float) -> str:
        conn = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        try:
            t0 = time.monotonic()
            conn.execute("BEGIN EXCLUSIVE")
            waited = time.monotonic() - t0
            self._stop.wait(hold)
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return f"held {hold:.0f} s (waited {waited:.2f} s for the lock)"

    def disk_full(self, hold: float) -> str:
        if self.disk is None:
            return f"skipped: the journal is not on a tmpfs this script mounted ({self.no_disk})"
        ballast = self.disk / "ballast"
        try:
            size = fill(ballast)
            self._stop.wait(hold)
        finally:
            ballast.unlink(missing_ok=True)
        return f"full for {hold:.0f} s ({size / 1e6:.0f} MB of ballast)"


def disk_mb(directory: Path) -> float:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total / 1e6


def sample(proxy_pid: int, journal: Path) -> dict[str, object]:
    child = ingest_pid(proxy_pid)
    return {
        "journal_dir_mb": disk_mb(journal),
        "proxy_rss_mb": rss(proxy_pid),
        "ingest_rss_mb": rss(child),
        "proxy_fds": fds(proxy_pid),
        "ingest_fds": fds(child),
        "ingest_pid": child,
    }


def stored_ids(db: Path) -> list[str]:
    conn = sqlite3.connect(db, timeout=60)
    try:
        return [r[0] for r in conn.execute("SELECT response_id FROM rounds")]
    finally:
        conn.close()


async def drive(
    args: argparse.Namespace, targets: dict[str, str], stats: Stats, t_end: float
) -> None:
    tasks = [
        asyncio.ensure_future(client(n, targets, stats, t_end, args)) for n in range(args.streams)
    ]
    done, pending = await asyncio.wait(tasks, timeout=t_end - time.monotonic() + STOP_GRACE)
    for task in pending:  # a stream still open past the grace: counted as failed, not completed
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--streams", type=int, default=200, help="concurrent clients")
    ap.add_argument("--seconds", type=float, default=600, help="how long the clients run")
    ap.add_argument("--events", type=int, default=40, help="SSE events per response")
    ap.add_argument("--gap-ms", type=float, default=10, help="between events")
    ap.add_argument("--think", type=float, default=3.0, help="mean pause between requests (s)")
    ap.add_argument("--fault-every", type=float, default=60, help="seconds between faults")
    ap.add_argument("--fault-seconds", type=float, default=10, help="how long a lock/full lasts")
    ap.add_argument("--tmpfs-size", default="384m", help="of the journal's tmpfs (root only)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tt-soak-"))
    disk: Path | None = tmp / "disk"
    no_disk = mount_tmpfs(disk, args.tmpfs_size)  # type: ignore[arg-type]
    if no_disk is not None:
        print(f"journal not on a tmpfs ({no_disk}): the disk-full fault is skipped")
        disk = None
    journal = (disk or tmp) / "journal"
    db = tmp / "soak.db"
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, object] = {"args": vars(args)}
    code = 0
    try:
        up = free_port()
        procs.append(
            subprocess.Popen([sys.executable, str(ROOT / "bench" / "sse_upstream.py"), str(up)])
        )
        wait_port(up)
        mitm_port, tt_port = free_port(), free_port()
        mitmdump = str(Path(sys.executable).with_name("mitmdump"))
        procs.append(
            subprocess.Popen(
                [
                    mitmdump,
                    "-q",
                    "--mode",
                    f"reverse:http://127.0.0.1:{up}@{mitm_port}",
                    "--set",
                    "stream_large_bodies=1",
                    "--set",
                    f"confdir={tmp / 'mitm'}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        tt_log = open(tmp / "tracetap.log", "wb")
        tt = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tracetap",
                "proxy",
                "--db",
                f"sqlite:///{db}",
                "--anthropic-port",
                str(tt_port),
                "--anthropic-upstream",
                f"http://127.0.0.1:{up}",
                "--openai-port",
                "0",
                "--journal-dir",
                str(journal),
                "--confdir",
                str(tmp / "mitm2"),
            ],
            stdout=tt_log,
            stderr=subprocess.STDOUT,
        )
        procs.append(tt)
        wait_port(mitm_port)
        wait_port(tt_port)
        targets = {
            "tracetap": f"http://127.0.0.1:{tt_port}",
            "mitmproxy": f"http://127.0.0.1:{mitm_port}",
        }
        stats = Stats()
        t0 = time.monotonic()
        t_end = t0 + args.seconds
        faults = Faults(tt.pid, db, disk, no_disk, args, t_end).start()
        warm = min(30.0, args.seconds / 10)
        samples: dict[str, dict[str, object]] = {}

        def take_samples() -> None:
            time.sleep(warm)
            samples["start"] = sample(tt.pid, journal)
            time.sleep(max(0.0, t_end - time.monotonic() - 1))
            samples["end"] = sample(tt.pid, journal)

        sampler = threading.Thread(target=take_samples, daemon=True)
        sampler.start()
        print(
            f"soak: {args.streams} streams for {args.seconds:.0f} s, a fault every "
            f"{args.fault_every:.0f} s; logs in {tmp}",
            flush=True,
        )
        asyncio.run(drive(args, targets, stats, t_end))
        faults.stop()
        sampler.join(5)
        ran = time.monotonic() - t0
        stop_t0 = time.monotonic()
        tt.send_signal(signal.SIGTERM)
        try:
            tt.wait(PROXY_STOP)
            proxy_exit: object = tt.returncode
        except subprocess.TimeoutExpired:
            tt.kill()
            tt.wait()
            proxy_exit = f"did not exit in {PROXY_STOP:.0f} s after SIGTERM (killed)"
        stop_s = time.monotonic() - stop_t0
        completed = stats.completed["tracetap"]
        stored = stored_ids(db)
        lost = sorted(set(completed) - set(stored))
        extra = sorted(set(stored) - set(completed))
        tt_ttfb, mitm_ttfb = stats.ttfb["tracetap"], stats.ttfb["mitmproxy"]
        figures = {
            "ran_s": ran,
            "completed": len(completed),
            "stored": len(stored),
            "stored_distinct": len(set(stored)),
            "lost": len(lost),
            "lost_ids": lost[:50],
            "stored_not_completed": len(extra),
            "failed": {k: len(v) for k, v in stats.failed.items()},
            "failed_examples": {k: v[:5] for k, v in stats.failed.items()},
            "mitmproxy_completed": len(stats.completed["mitmproxy"]),
            "samples": samples,
            "ttfb_ms": {
                name: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "n": len(v)}
                for name, v in (("tracetap", tt_ttfb), ("mitmproxy", mitm_ttfb))
                if v
            },
            "ttlb_ms": {
                name: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "n": len(v)}
                for name, v in stats.ttlb.items()
                if v
            },
            "proxy_exit": proxy_exit,
            "proxy_stop_s": stop_s,
            "faults": faults.log,
        }
        results.update(figures)
        if lost or proxy_exit != 0:
            code = 1
        ttfb = figures["ttfb_ms"]
        start, end = samples.get("start", {}), samples.get("end", {})

        def f(v: object, fmt: str = ".0f") -> str:
            return "-" if v is None else format(v, fmt)

        rows = [
            ("requests completed (tracetap)", f"{len(completed)}"),
            ("rounds stored", f"{len(stored)} ({len(set(stored))} distinct)"),
            ("lost (must be 0)", f"{len(lost)}"),
            ("stored, not seen complete", f"{len(extra)}"),
            (
                "failed requests tracetap / mitmproxy",
                f"{len(stats.failed['tracetap'])} / {len(stats.failed['mitmproxy'])}",
            ),
            (
                "proxy RSS MB start / end",
                f"{f(start.get('proxy_rss_mb'))} / {f(end.get('proxy_rss_mb'))}",
            ),
            (
                "ingest RSS MB start / end",
                f"{f(start.get('ingest_rss_mb'))} / {f(end.get('ingest_rss_mb'))}",
            ),
            (
                "journal dir MB start / end",
                f"{f(start.get('journal_dir_mb'), '.1f')} / {f(end.get('journal_dir_mb'), '.1f')}",
            ),
            ("proxy fds start / end", f"{f(start.get('proxy_fds'))} / {f(end.get('proxy_fds'))}"),
            (
                "ingest fds start / end",
                f"{f(start.get('ingest_fds'))} / {f(end.get('ingest_fds'))}",
            ),
        ]
        if "tracetap" in ttfb and "mitmproxy" in ttfb:  # type: ignore[operator]
            a, b = ttfb["tracetap"], ttfb["mitmproxy"]  # type: ignore[index]
            rows += [
                ("TTFB p50 ms tracetap / mitmproxy", f"{a['p50']:.1f} / {b['p50']:.1f}"),
                ("TTFB p99 ms tracetap / mitmproxy", f"{a['p99']:.1f} / {b['p99']:.1f}"),
                ("added p99 ms", f"{a['p99'] - b['p99']:+.1f}"),
            ]
            results["added_p99_ms"] = a["p99"] - b["p99"]
            c, d = figures["ttlb_ms"]["tracetap"], figures["ttlb_ms"]["mitmproxy"]  # type: ignore[index]
            rows += [
                ("TTLB p50 ms tracetap / mitmproxy", f"{c['p50']:.1f} / {d['p50']:.1f}"),
                ("TTLB p99 ms tracetap / mitmproxy", f"{c['p99']:.1f} / {d['p99']:.1f}"),
            ]
        rows += [
            ("proxy exit after SIGTERM", f"{proxy_exit} in {stop_s:.1f} s"),
            (
                "faults injected",
                "; ".join(f"{x['at_s']:.0f} s {x['fault']}: {x['detail']}" for x in faults.log)
                or "none",
            ),
        ]
        width = max(len(k) for k, _ in rows)
        print()
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
        if lost:
            print(f"\nLOST: {lost[:20]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if disk is not None:
            umount(disk)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(results, indent=2, default=str))
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
