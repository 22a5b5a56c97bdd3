"""Pytest plugin: the real Claude Code and Codex CLIs (pinned in tests/e2e/npm), run isolated.

Installs them with `npm ci` on first use; each run gets its own HOME / config dirs and talks
only to the base URL it is given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["AgentCLIs", "claude_env", "codex_config", "codex_env", "run_claude", "run_codex"]

NPM_DIR = Path(__file__).resolve().parent.parent / "e2e" / "npm"


@dataclass
class AgentCLIs:
    claude: Path
    codex: Path

    def versions(self) -> dict[str, str]:
        return {
            name: subprocess.run(
                [str(path), "--version"], capture_output=True, text=True, timeout=60
            ).stdout.strip()
            for name, path in (("claude", self.claude), ("codex", self.codex))
        }


def _install() -> AgentCLIs:
    bin_dir = NPM_DIR / "node_modules" / ".bin"
    clis = AgentCLIs(bin_dir / "claude", bin_dir / "codex")
    if not (clis.claude.exists() and clis.codex.exists()):
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed for the end-to-end tests (apt-get install npm)")
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NPM_DIR,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"npm ci failed in {NPM_DIR}:\n{proc.stdout}\n{proc.stderr}")
    return clis


def _base_env(home: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(home),
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


CLAUDE_API_KEY = "sk-ant-api03-e2e-test-key"


def claude_env(
    base_url: str | None, home: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Claude Code's isolated environment: base_url None talks to api.anthropic.com (forward
    mode); `extra` may replace the API key by a login (CLAUDE_CODE_OAUTH_TOKEN)."""
    home.mkdir(parents=True, exist_ok=True)
    env = _base_env(home)
    env.update(ANTHROPIC_API_KEY=CLAUDE_API_KEY, CLAUDE_CONFIG_DIR=str(home / ".claude"))
    if base_url is not None:
        env["ANTHROPIC_BASE_URL"] = base_url
    env.update(extra or {})
    return {k: v for k, v in env.items() if v}  # an empty value removes the variable


def run_claude(
    clis: AgentCLIs,
    base_url: str | None,
    workdir: Path,
    prompt: str,
    *,
    home: Path,
    timeout: float = 180,
    tools: tuple[str, ...] = ("Bash", "Read"),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT --allowedTools Bash Read` with ANTHROPIC_BASE_URL=base_url (see
    `claude_env` for base_url None and `env`)."""
    env = claude_env(base_url, home, env)
    return subprocess.run(
        [str(clis.claude), "-p", prompt, "--allowedTools", *tools],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_codex(
    clis: AgentCLIs,
    base_url: str,
    workdir: Path,
    prompt: str,
    *,
    home: Path,
    timeout: float = 180,
    websockets: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`codex exec --skip-git-repo-check PROMPT` with a custom provider at base_url/v1.

    websockets=True makes Codex use the Responses API over a WebSocket; `env` adds variables
    (HTTPS_PROXY, CODEX_CA_CERTIFICATE for forward mode).
    """
    env = codex_env(base_url, home, websockets=websockets, extra=env)
    return subprocess.run(
        [str(clis.codex), "exec", "--skip-git-repo-check", prompt],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def codex_config(base_url: str, *, websockets: bool = False) -> str:
    """config.toml for a custom Responses provider at base_url/v1, API key from the env."""
    return (
        'model = "gpt-5-codex"\n'
        'model_provider = "tracetap"\n'
        'approval_policy = "never"\n'
        'sandbox_mode = "danger-full-access"\n'
        "check_for_update_on_startup = false\n\n"
        "[analytics]\n"
        "enabled = false\n\n"
        "[model_providers.tracetap]\n"
        'name = "tracetap e2e"\n'
        f'base_url = "{base_url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "OPENAI_API_KEY"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n" + ("supports_websockets = true\n" if websockets else "")
    )


def codex_env(
    base_url: str,
    home: Path,
    *,
    websockets: bool = False,
    extra: dict[str, str] | None = None,
    config: str | None = None,
) -> dict[str, str]:
    """Codex's isolated environment, its CODEX_HOME/config.toml written (`config` replaces
    the default custom-provider one)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        config if config is not None else codex_config(base_url, websockets=websockets)
    )
    env = _base_env(home)
    env.update(CODEX_HOME=str(codex_home), OPENAI_API_KEY="sk-e2e-test-openai-key")
    env.update(extra or {})
    return {k: v for k, v in env.items() if v}


@pytest.fixture(scope="session")
def agent_clis() -> AgentCLIs:
    return _install()
