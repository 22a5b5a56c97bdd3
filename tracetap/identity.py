"""Session reconstruction: which agent session a round belongs to, and what kind of round it is.

Identity comes from headers/metadata (adapters); here: prefix-matched fallback, thread and kind.
"""

from __future__ import annotations

import functools
import re
from pathlib import PurePath
from typing import Any

from tracetap.content import canonical, digest
from tracetap.model import COMPACTION, MAIN, SIDE, SUBAGENT, Round

__all__ = ["assign_identity", "classify", "normalize_system", "system_text"]

# Per-request noise that is not part of the cacheable prefix (Claude Code's billing line).
_NOISE_LINE = re.compile(r"^x-anthropic-billing-header:.*$", re.MULTILINE)
_NOISE_MARK = "x-anthropic-billing-header:"
_CWD = re.compile(r"(?:Primary working directory|Working directory|<cwd>)\s*:?\s*([^\s<]+)")
_CODEX_CWD = re.compile(r"<cwd>([^<]+)</cwd>")
_COMPACTION_MARKERS = (
    "create a detailed summary of the conversation",
    "your task is to create a detailed summary",
    "context checkpoint compaction",
)


def system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(_block_text(b) for b in system)
    return "" if system is None else str(system)


def _block_text(block: Any) -> str:
    """A system block's text; a block whose `text` is not a string (a malformed request) as
    the text of its value."""
    text = block.get("text", "") if isinstance(block, dict) else block
    return text if isinstance(text, str) else str(text)


def _denoise(text: str) -> str:
    return _NOISE_LINE.sub("", text) if _NOISE_MARK in text else text


def normalize_system(system: Any) -> str:
    return "\n".join(_denoised_blocks(system))


def _denoised_blocks(system: Any) -> tuple[str, ...]:
    """The system prompt's blocks without their noise lines: block by block (the noise is a
    line, never across blocks), each the very string it was when it has none."""
    if isinstance(system, list):
        return tuple(_denoise(_block_text(b)) for b in system)
    return (_denoise(system_text(system)),)


@functools.lru_cache(maxsize=256)
def _system_facts(blocks: tuple[str, ...]) -> tuple[str, str, str | None]:
    """(normalized system prompt, its digest, the working directory it names) of denoised
    blocks: worked out once per distinct prompt, which a session re-sends every round."""
    system = "\n".join(blocks)
    match = _CWD.search(system) if _may_name_cwd(system) else None
    return system, digest(system.encode()), match.group(1) if match else None


def _last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if not isinstance(msg, dict) or msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
        return ""
    return ""


def _may_name_cwd(text: str) -> bool:
    """Cheap test before the regexes: every _CWD / _CODEX_CWD match holds one of these."""
    return "orking directory" in text or "<cwd>" in text


def _messages_cwd(messages: list[Any]) -> str | None:
    """The working directory an early message names: Claude Code puts its environment block
    in the first user message; Codex uses <environment_context><cwd>…</cwd>."""
    for msg in messages[:4]:
        for text in _texts(msg.get("content") if isinstance(msg, dict) else None):
            if not _may_name_cwd(text):
                continue
            m = _CODEX_CWD.search(text) or _CWD.search(text)
            if m:
                return m.group(1)
    return None


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
    return []


def assign_identity(rnd: Round) -> None:
    """Fill system_key, thread_key, project and (when the client said nothing) the session id."""
    system, rnd.system_key, cwd = _system_facts(_denoised_blocks(rnd.system))
    if not system:  # Codex sends no instructions: its developer messages play that part
        lead = []
        for msg in rnd.messages:
            if not (isinstance(msg, dict) and msg.get("role") in ("system", "developer")):
                break
            lead.append(msg)
        system = canonical(lead).decode() if lead else ""
        rnd.system_key = digest(system.encode())
    first = next(
        (
            m
            for m in rnd.messages
            if not (isinstance(m, dict) and m.get("role") in ("system", "developer"))
        ),
        None,
    )
    agent = _agent_id(rnd)
    if agent:  # a Claude Code subagent: its lineage is the agent, whatever its first message
        rnd.thread_key = digest(f"agent:{agent}".encode())
    else:
        rnd.thread_key = digest(canonical(first)) if first is not None else None
    cwd = cwd or _messages_cwd(rnd.messages)  # the system prompt's, without its noise lines
    if cwd and not rnd.project:
        rnd.project = PurePath(cwd.replace("\\", "/")).name or cwd
    if not rnd.agent_session_id:
        rnd.agent_session_id = (
            "prefix-" + digest(f"{rnd.system_key}:{rnd.thread_key}".encode())[:20]
        )
        rnd.session_source = "prefix"


def classify(rnd: Round, main_system_key: str | None) -> tuple[str, str | None]:
    """(kind, main system key to remember for the session)."""
    if rnd.kind:
        return rnd.kind, main_system_key
    last = _last_user_text(rnd.messages).lower()
    if any(marker in last for marker in _COMPACTION_MARKERS):  # with tools or without
        return COMPACTION, main_system_key
    max_tokens = rnd.envelope.get("max_tokens") or rnd.envelope.get("max_output_tokens")
    if (
        (isinstance(max_tokens, int) and max_tokens <= 1)
        or rnd.envelope.get("generate") is False
        or (not rnd.tools and _coding_agent(rnd))
    ):  # quota probes, titles, cache prewarms
        return SIDE, main_system_key
    if _claude_subagent(rnd):  # Claude Code says so itself (2.1.x)
        return SUBAGENT, main_system_key
    if rnd.provider == "codex":  # says so with a header; its prompt changes after /compact
        if any(k.lower() == "x-openai-subagent" for k, _ in rnd.request_headers):
            return SUBAGENT, main_system_key
        return MAIN, rnd.system_key
    if main_system_key is None or main_system_key == rnd.system_key:
        return MAIN, rnd.system_key
    return SUBAGENT, main_system_key


def _coding_agent(rnd: Round) -> bool:
    """Claude Code or Codex, whose requests without tools are titles, summaries and probes
    beside the agent loop; any other client's request without tools is a conversation turn."""
    if rnd.provider == "codex" or rnd.session_source == "header":
        return True
    client = (rnd.client or "").lower()
    return client.startswith(("claude", "codex"))


def _agent_id(rnd: Round) -> str | None:
    """The x-claude-code-agent-id header Claude Code sends on a subagent's requests."""
    return next(
        (v for k, v in rnd.request_headers if k.lower() == "x-claude-code-agent-id" and v), None
    )


def _claude_subagent(rnd: Round) -> bool:
    """Claude Code marks subagent requests with an x-claude-code-agent-id header and
    `cc_is_subagent=true` in its billing line."""
    if _agent_id(rnd):
        return True
    return "cc_is_subagent=true" in system_text(rnd.system)[:2000]
