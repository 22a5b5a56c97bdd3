"""Every setting of a recording proxy, declared once: the `tracetap proxy` options, the mitmproxy
options of the addon (`mitmdump -s`, as `tracetap_<name>`) and the ingest process's config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracetap.wire.frames import DEFAULT_MAX_BODY

__all__ = ["CONTENT_LEVELS", "Setting", "Settings"]

CONTENT_LEVELS = ("full", "redacted", "none")


@dataclass(frozen=True)
class Setting:
    """How one field is offered to users: its help, environment variable and flag name, and
    whether the addon offers it as a mitmproxy option (the proxy-only fields are mitmproxy's
    own options there: `--mode`, `--listen-host`, `--set confdir=...`)."""

    help: str
    env: str | None = None
    flag: str | None = None  # the CLI flag when it is not --<name with dashes>
    addon: bool = True
    min: int | None = None


def _setting(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"setting": Setting(help, **kw)})


@dataclass(frozen=True)
class Settings:
    """A recording proxy's configuration (frozen, picklable: it is what the ingest process gets)."""

    # What is recorded and where: also the addon's mitmproxy options.
    db: str | None = _setting(
        None,
        "SQLAlchemy URL of the store (default: a SQLite file in the user data dir).",
        env="TRACETAP_DB",
    )
    journal_dir: str | None = _setting(
        None,
        "Write-ahead journal directory (default: beside a SQLite store, else in the user "
        "data dir).",
        env="TRACETAP_JOURNAL_DIR",
    )
    content: str = _setting(
        "redacted",
        "What text is kept: full, redacted (secrets and PII replaced by placeholders "
        "and pseudonyms) or none (sizes, token counts, hashes and timing only).",
        env="TRACETAP_CONTENT",
    )
    key_file: str | None = _setting(
        None,
        "Pseudonym key (HMAC) file; created 0600 on first use. Share it across a team so "
        "pseudonyms agree.",
        env="TRACETAP_KEY_FILE",
    )
    tokenizer: str = _setting(
        "default",
        "Tokenizer for per-segment counts and prefix block hashes: default (offline "
        "cl100k), hf:<tokenizer.json>, or off.",
    )
    max_body: int = _setting(
        DEFAULT_MAX_BODY,
        "Bytes of one request or response kept for parsing; past it the round "
        "is marked truncated (the client still gets every byte).",
        min=1024,
    )
    ingest_workers: int = _setting(
        1,
        "Processes that parse, tokenize and scrub captured rounds, each taking whole sessions "
        "(a new session goes to the least busy one). 1 suits a laptop; more for a team proxy "
        "with cores to spare.",
        env="TRACETAP_INGEST_WORKERS",
        min=1,
    )
    admin_port: int | None = _setting(
        None,
        "Serve /healthz and /metrics on this port.",
        env="TRACETAP_ADMIN_PORT",
    )
    admin_host: str = _setting(
        "127.0.0.1",
        "Address the admin endpoints listen on; loopback unless given (they have no "
        "authentication).",
        env="TRACETAP_ADMIN_HOST",
    )
    ui_port: int | None = _setting(
        None,
        "Serve the web UI (as `tracetap ui`) on this loopback port beside the proxy, on the "
        "same store.",
        env="TRACETAP_UI_PORT",
        addon=False,
    )
    # How `tracetap proxy` listens and where it forwards: mitmproxy's own options in the addon.
    listen_host: str = _setting("127.0.0.1", "Address to listen on.", addon=False)
    anthropic_port: int = _setting(
        8080, "Reverse-proxy port for Anthropic (0 disables).", addon=False
    )
    anthropic_upstream: str = _setting(
        "https://api.anthropic.com", "Where Anthropic traffic goes.", addon=False
    )
    openai_port: int = _setting(8081, "Reverse-proxy port for OpenAI (0 disables).", addon=False)
    openai_upstream: str = _setting(
        "https://api.openai.com", "Where OpenAI traffic goes.", addon=False
    )
    forward_port: int | None = _setting(
        None,
        "Forward (HTTPS_PROXY) mode port; TLS is intercepted for the model API hosts only.",
        flag="--port",
        addon=False,
    )
    confdir: str | None = _setting(
        None, "mitmproxy CA directory (default ~/.mitmproxy).", env="TRACETAP_CONFDIR", addon=False
    )
    resolve: tuple[str, ...] = _setting(
        (),
        "Send upstream connections for host:port to address:port instead (repeatable), e.g. "
        "api.anthropic.com:443=10.0.0.5:8443.",
        addon=False,
    )
    upstream_insecure: bool = _setting(
        False, "Do not verify upstream TLS certificates (staging upstreams only).", addon=False
    )
    quiet: bool = _setting(False, "Do not print mitmproxy warnings.", addon=False)

    def __post_init__(self) -> None:
        if self.content not in CONTENT_LEVELS:
            raise ValueError(
                f"unknown content level {self.content!r}; use one of {', '.join(CONTENT_LEVELS)}"
            )
        for f in dataclasses.fields(self):
            low = f.metadata["setting"].min
            value = getattr(self, f.name)
            if low is not None and value is not None and value < low:
                raise ValueError(f"{f.name} must be at least {low}")

    @staticmethod
    def described() -> list[tuple[dataclasses.Field[Any], Setting]]:
        """Every field with how it is offered, in declaration order."""
        return [(f, f.metadata["setting"]) for f in dataclasses.fields(Settings)]

    @staticmethod
    def addon_option(name: str) -> str:
        """The mitmproxy option a field is offered as."""
        return f"tracetap_{name}"

    def addon_options(self) -> dict[str, Any]:
        """The addon's mitmproxy option values for these settings."""
        return {
            self.addon_option(f.name): getattr(self, f.name) for f, s in self.described() if s.addon
        }

    @classmethod
    def from_addon_options(cls, options: Mapping[str, Any] | Any) -> Settings:
        """Settings from mitmproxy's options (an `Options` object or a mapping of them); a
        field the options lack keeps its default."""
        values: dict[str, Any] = {}
        for f, s in cls.described():
            if not s.addon:
                continue
            key = cls.addon_option(f.name)
            if isinstance(options, Mapping):
                present, value = key in options, options.get(key)
            else:
                present, value = hasattr(options, key), getattr(options, key, None)
            if present:
                values[f.name] = value
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
