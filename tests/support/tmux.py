"""Drive a terminal program in a private tmux server: type with send-keys, read with capture-pane.

Each `Tmux` has its own server socket, so tests never touch a user's tmux sessions.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["Tmux"]


class Tmux:
    """One program in a detached tmux session of a fixed size."""

    def __init__(
        self,
        socket: Path,
        command: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        width: int = 160,
        height: int = 50,
    ) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            raise RuntimeError("tmux is needed for the interactive tests (apt-get install tmux)")
        self.tmux = tmux
        self.socket = socket
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # the program runs with exactly `env` (tmux's server would add its own otherwise)
        shell = f"exec env -i {exports} {shlex.join(command)}"
        self._run(
            "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
            "-c", str(cwd), shell,
        )  # fmt: skip
        self._run("set-option", "-t", "t", "remain-on-exit", "on")

    def _run(self, *args: str) -> str:
        proc = subprocess.run(
            [self.tmux, "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {proc.stderr.strip()}")
        return proc.stdout

    def type(self, text: str) -> None:
        """Type `text` literally (no key names)."""
        self._run("send-keys", "-t", "t", "-l", text)

    def key(self, *names: str) -> None:
        """Press keys by tmux name: Enter, Escape, C-c, Up …"""
        self._run("send-keys", "-t", "t", *names)

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "t", "-S", "-200")

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """The screen once it shows `text`; an error with the screen when it never does."""
        deadline = time.time() + timeout
        screen = ""
        while time.time() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared on the screen:\n{screen}")

    def dead(self) -> bool:
        return self._run("display-message", "-p", "-t", "t", "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-S", str(self.socket), "kill-server"], capture_output=True, timeout=30
        )
