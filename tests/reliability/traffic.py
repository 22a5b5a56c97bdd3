"""Traffic and bookkeeping for the fault tests: client threads that send through a real
`tracetap proxy` and note the response id of every request they saw complete, what the store
holds afterwards, and the proxy's processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import anthropic
import httpx
import sqlalchemy as sa

from tests.support.proxy import RunningProxy
from tracetap.storage import models as m
from tracetap.storage.db import make_engine

__all__ = [
    "Burst",
    "Health",
    "alive",
    "fault_env",
    "ingest_pid",
    "stop_in_time",
    "stored_quarantine",
    "stored_rounds",
    "stored_sides",
]

TOOLS = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def ingest_pid(proxy: RunningProxy) -> int | None:
    """The spawned ingest process (not multiprocessing's resource tracker), if one runs."""
    for pid in _children(proxy.proc.pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def stored_rounds(url: str) -> list[str]:
    """Every stored round's response id, sorted (a duplicate shows twice)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(sa.select(m.Round.response_id)).scalars())
    finally:
        engine.dispose()


def stored_sides(url: str) -> list[str]:
    """Every stored side request's kind."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(sa.select(m.SideRequest.kind)).scalars())
    finally:
        engine.dispose()


def stored_quarantine(url: str) -> list[tuple[str | None, str]]:
    """(kind, error) of every quarantined record."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(m.Quarantine.kind, m.Quarantine.error))
            return [(kind, error) for kind, error in rows]
    finally:
        engine.dispose()


def stop_in_time(proxy: RunningProxy, limit: float = 60.0) -> float:
    """SIGTERM; the proxy must exit by itself within `limit` seconds (and cleanly)."""
    started = time.monotonic()
    proxy.stop(signal.SIGTERM, timeout=limit)
    took = time.monotonic() - started
    assert took < limit, f"the proxy took {took:.1f} s to stop (limit {limit} s)"
    assert proxy.proc.returncode == 0, (proxy.proc.returncode, proxy.log.read_text()[-3000:])
    return took


class Burst:
    """`threads` clients, each sending requests one after another (every other one streamed)
    until `stop()` or a failure; `done` holds the response id of every request that completed,
    in completion order, `failed` what the others raised. `pause` seconds between requests."""

    def __init__(self, url: str, *, threads: int = 4, pause: float = 0.0, tag: str = "b") -> None:
        self.url = url
        self.pause = pause
        self.tag = tag
        self.done: list[str] = []
        self.done_at: dict[str, float] = {}  # response id -> time.monotonic() it completed
        self.streamed: set[str] = set()  # response ids of the streamed (SSE) ones
        self.took: dict[str, float] = {}  # response id -> seconds from send to complete
        self.failed: list[str] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(w, threads), daemon=True)
            for w in range(threads)
        ]

    def start(self) -> Burst:
        for t in self._threads:
            t.start()
        return self

    def _run(self, worker: int, step: int) -> None:
        client = anthropic.Anthropic(
            base_url=self.url, api_key="sk-ant-api03-fault", max_retries=0, timeout=60.0
        )
        i = worker
        while not self._stop.is_set():
            with self._lock:
                self.sent += 1
            t0 = time.monotonic()
            try:
                msg_id = self._ask(client, i)
                if i % 2:
                    self.streamed.add(msg_id)
            except Exception as exc:  # a proxy killed under it: not completed
                with self._lock:
                    self.failed.append(f"{type(exc).__name__}: {exc}")
                return
            with self._lock:
                self.done.append(msg_id)
                self.done_at[msg_id] = time.monotonic()
                self.took[msg_id] = self.done_at[msg_id] - t0
            i += step
            if self.pause:
                self._stop.wait(self.pause)

    def _ask(self, client: anthropic.Anthropic, i: int) -> str:
        kw = {
            "model": "claude-fault",
            "max_tokens": 20,
            "tools": TOOLS,
            "messages": [{"role": "user", "content": f"{self.tag} task {i}"}],
            "extra_headers": {"X-Claude-Code-Session-Id": f"{self.tag}-{i % 7}"},
        }
        if i % 2:
            with client.messages.stream(**kw) as stream:  # type: ignore[arg-type]
                return stream.get_final_message().id
        return client.messages.create(**kw).id  # type: ignore[call-overload,no-any-return]

    def wait_done(self, n: int, timeout: float = 60.0, poll: float = 0.001) -> None:
        deadline = time.monotonic() + timeout
        while len(self.done) < n:
            assert time.monotonic() < deadline, f"only {len(self.done)} of {n} completed"
            assert not self.failed, self.failed
            time.sleep(poll)

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
            assert not t.is_alive(), "a client thread is stuck"

    def completed(self) -> list[str]:
        with self._lock:
            return sorted(self.done)


class Health:
    """Polls /healthz every `every` seconds in a thread, keeping (time, status code, body)."""

    def __init__(self, proxy: RunningProxy, every: float = 0.2) -> None:
        assert proxy.admin_port is not None
        self.url = f"http://127.0.0.1:{proxy.admin_port}/healthz"
        self.every = every
        self.seen: list[tuple[float, int, dict[str, object]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Health:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                r = httpx.get(self.url, timeout=5)
                self.seen.append((time.monotonic(), r.status_code, r.json()))
            except (httpx.HTTPError, ValueError):
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def summary(self) -> Counter[tuple[int, object, object]]:
        return Counter(
            (code, body.get("status"), body.get("reason")) for _, code, body in self.seen
        )


FAULT_HOOK = """
import errno, os, time

_DIR = os.environ["TT_FAULT_DIR"]
_FLAG = os.environ.get("TT_FAULT_ENOSPC_FLAG")
_DELAY = float(os.environ.get("TT_FAULT_FSYNC_DELAY") or 0)
_fsync = os.fsync


def fsync(fd):
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        path = ""
    if path.startswith(_DIR):
        if _FLAG and os.path.exists(_FLAG):  # as a full disk reports it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        time.sleep(_DELAY)  # as a busy disk takes its time
    return _fsync(fd)


os.fsync = fsync
"""


def fault_env(
    tmp: Path, under: Path, *, enospc_flag: Path | None = None, fsync_delay: float = 0.0
) -> dict[str, str]:
    """Environment for `start_proxy(env=...)` that makes `os.fsync` of files under `under`, in
    the proxy and its ingest process, raise ENOSPC while `enospc_flag` exists, and otherwise
    take `fsync_delay` seconds longer (a `sitecustomize` on PYTHONPATH)."""
    hook = tmp / "fault-hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(FAULT_HOOK)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    env = {"PYTHONPATH": path, "TT_FAULT_DIR": str(under), "TT_FAULT_FSYNC_DELAY": str(fsync_delay)}
    if enospc_flag is not None:
        env["TT_FAULT_ENOSPC_FLAG"] = str(enospc_flag)
    return env
