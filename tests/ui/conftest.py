"""Fixtures of the UI tests: a seeded store and `tracetap ui` started on it as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.proxy import free_port
from tests.ui.seed import seed


@dataclass
class RunningUI:
    proc: subprocess.Popen[str]
    url: str
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_ui(db_url: str, log: Path, *args: str, host: str = "127.0.0.1") -> RunningUI:
    """`tracetap ui --db db_url` on a free port; returns once it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACETAP_")}
    env["TRACETAP_KEY_FILE"] = str(log.with_name("ui-pseudonym.key"))  # never the user's
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracetap", "ui", "--db", db_url, "--port", str(port)]
            + ["--host", host, *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tracetap ui exited early:\n{log.read_text()}")
        try:
            httpx.get(url + "/favicon.ico", timeout=1)
            return RunningUI(proc, url, log)
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"tracetap ui did not answer:\n{log.read_text()}")


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A fresh seeded SQLite store (its URL)."""
    return seed(tmp_path / "store.db")


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[Callable[..., RunningUI]]:
    """Starts `tracetap ui` processes; each is stopped after the test."""
    started: list[RunningUI] = []

    def factory(db_url: str, *args: str, host: str = "127.0.0.1") -> RunningUI:
        running = start_ui(db_url, tmp_path / f"ui-{len(started)}.log", *args, host=host)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()
