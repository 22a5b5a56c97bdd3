"""Pytest plugin: start real `tracetap proxy` processes on free loopback ports.

`tracetap_proxy(anthropic_upstream=..., openai_upstream=...)` returns a running RunningProxy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["RunningProxy", "free_port", "start_proxy"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tracetap proxy exited early:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"tracetap proxy did not listen on {port}:\n{log.read_text()}")


@dataclass
class RunningProxy:
    proc: subprocess.Popen
    db_url: str
    journal_dir: Path
    log: Path
    anthropic_port: int | None = None
    openai_port: int | None = None
    forward_port: int | None = None
    admin_port: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.anthropic_port}"

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.openai_port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_proxy(
    tmp: Path,
    *,
    confdir: Path,
    anthropic_upstream: str | None = None,
    openai_upstream: str | None = None,
    forward: bool = False,
    admin: bool = False,
    db_url: str | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    journal_dir: Path | None = None,
) -> RunningProxy:
    tmp.mkdir(parents=True, exist_ok=True)
    db_url = db_url or f"sqlite:///{tmp / 'tracetap.db'}"
    journal = journal_dir or tmp / "journal"
    log = tmp / f"proxy-{time.time_ns()}.log"
    a_port = free_port() if anthropic_upstream else 0
    o_port = free_port() if openai_upstream else 0
    f_port = free_port() if forward else None
    admin_port = free_port() if admin else None
    cmd = [
        sys.executable,
        "-m",
        "tracetap",
        "proxy",
        "--db",
        db_url,
        "--anthropic-port",
        str(a_port),
        "--openai-port",
        str(o_port),
        "--journal-dir",
        str(journal),
        "--confdir",
        str(confdir),
    ]
    if anthropic_upstream:
        cmd += ["--anthropic-upstream", anthropic_upstream]
    if openai_upstream:
        cmd += ["--openai-upstream", openai_upstream]
    if f_port:
        cmd += ["--port", str(f_port)]
    if admin_port:
        cmd += ["--admin-port", str(admin_port)]
    cmd += extra_args or []
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACETAP_")}
    full_env.update(env or {})
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env)
    running = RunningProxy(
        proc, db_url, journal, log, a_port or None, o_port or None, f_port, admin_port
    )
    for port in (a_port, o_port, f_port, admin_port):
        if port:
            _wait_port(port, proc, log)
    return running


@pytest.fixture(scope="session")
def mitm_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mitmproxy CA for the whole test session (generating it takes a moment)."""
    return tmp_path_factory.mktemp("mitmproxy")


@pytest.fixture
def tracetap_proxy(tmp_path: Path, mitm_confdir: Path) -> Iterator[Callable[..., RunningProxy]]:
    started: list[RunningProxy] = []

    def factory(**kw) -> RunningProxy:  # type: ignore[no-untyped-def]
        p = start_proxy(tmp_path / f"proxy{len(started)}", confdir=mitm_confdir, **kw)
        started.append(p)
        return p

    yield factory
    for p in started:
        p.stop()
