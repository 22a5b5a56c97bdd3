"""Readers for the files in deploy/ and the CLI they target, shared by the deploy tests.

Each returns the parsed file (Dockerfile instructions, compose, Kubernetes, systemd unit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main
import yaml
from dockerfile_parse import DockerfileParser

from tracetap.cli import app
from tracetap.settings import Settings

__all__ = [
    "DEPLOY",
    "ROOT",
    "VENV_BIN",
    "admin_host",
    "check_proxy_args",
    "compose",
    "dockerfile",
    "instructions",
    "k8s",
    "k8s_docs",
    "proxy_options",
    "systemd_unit",
]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = ROOT / ".venv" / "bin"


def proxy_options() -> dict[str, str | None]:
    """Every option of `tracetap proxy` -> its environment variable (None if it has none)."""
    command = typer.main.get_command(app).commands["proxy"]  # type: ignore[attr-defined]
    return {opt: param.envvar for param in command.params for opt in param.opts}


def check_proxy_args(args: list[str]) -> None:
    known = proxy_options()
    assert args[0] == "proxy"
    for flag in (a for a in args if a.startswith("--")):
        assert flag in known, f"tracetap proxy has no {flag}"


def admin_host(args: list[str]) -> str:
    """The address `tracetap proxy <args>` serves its admin endpoints on."""
    if "--admin-host" in args:
        return args[args.index("--admin-host") + 1]
    return Settings().admin_host


def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DEPLOY / "Dockerfile"))


def instructions(kind: str) -> list[str]:
    return [i["value"] for i in dockerfile().structure if i["instruction"] == kind]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def k8s(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def systemd_unit() -> dict[str, list[str]]:
    """[Service]-section keys -> values in order (repeated keys such as Environment= kept)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in (DEPLOY / "systemd" / "tracetap.service").read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(f"{section}.{key}", []).append(value)
    return out
