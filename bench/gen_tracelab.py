"""Synthetic TraceLab-shaped traces with the published dataset's distributions, by seed.

Importable `generate(n_rounds, seed=0)` yields rows; the CLI `-n N -o FILE` writes them.

Model (per the contract's headline figures): sessions of Claude Code (60 %) and Codex (40 %); each
session is a series of user requests (human wait before each: 85 % lognormal median 40 s,
15 % median 1.5 h; ~75 % < 5 min);
each request is an autonomous loop of ~8.8 LLM rounds with ~10.8 tool calls; context grows by the
append (tool results / user text, lognormal median ~875 tokens) plus the model's own output (median
~214) and is compacted near the window limit; the reported prefix is the previous context when the
gap since the last round is under the provider's cache TTL (Claude 5 min, Codex 1 h), else only the
shared system/tools block. Tool latency depends on the tool and, for shell calls, on the executable
(overall p50 ~0.3 s, p90 ~14 s, p99 ~3.5 min). Rows are ordered by session, then round_index.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Iterator
from typing import Any

from tracetap.tracelab import format_ts, open_text

__all__ = ["generate", "main"]

_T0 = 1772323200.0  # 2026-03-01T00:00:00Z
_SPAN_S = 60 * 86400.0
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# tool name -> (weight, median latency s, sigma); shell tools use the executable table instead.
_CLAUDE_TOOLS = {
    "Bash": (36, 0.0, 0.0),
    "Read": (27, 0.15, 0.8),
    "Edit": (20, 0.3, 0.9),
    "Grep": (5, 0.3, 0.9),
    "Glob": (3, 0.1, 0.8),
    "Write": (3, 0.3, 0.9),
    "TodoWrite": (2, 0.02, 0.5),
    "WebFetch": (1, 4.0, 1.0),
    "WebSearch": (1, 12.0, 0.6),
    "Task": (1, 150.0, 1.0),
    "MultiEdit": (1, 0.1, 0.9),
}
_CODEX_TOOLS = {
    "exec_command": (72, 0.0, 0.0),
    "write_stdin": (14, 3.0, 1.2),
    "apply_patch": (10, 0.2, 0.8),
    "update_plan": (3, 0.02, 0.5),
    "web_search": (1, 10.0, 0.7),
}
# executable -> (weight, median latency s, sigma, argument templates)
_EXECUTABLES = {
    "ls": (10, 0.08, 0.7, ["-la", "src", "tests"]),
    "cat": (8, 0.08, 0.7, ["README.md", "setup.cfg"]),
    "rg": (14, 0.25, 0.9, ["-n TODO", "-l 'def main'", "--files"]),
    "grep": (5, 0.1, 0.9, ["-rn import .", "-c error log.txt"]),
    "sed": (8, 0.1, 0.7, ["-n 1,120p src/app.py", "-n 40,80p README.md"]),
    "git": (12, 0.4, 1.0, ["status", "diff", "log --oneline -5", "add -A"]),
    "python": (9, 2.0, 1.5, ["-m pip list", "scripts/run.py", "-c 'print(1)'"]),
    "pytest": (9, 12.0, 1.1, ["-q", "tests/test_api.py -x", "-k slow"]),
    "npm": (5, 20.0, 1.2, ["test", "run build", "install"]),
    "cargo": (3, 40.0, 1.0, ["build", "test", "check"]),
    "make": (4, 30.0, 1.1, ["", "test", "lint"]),
    "go": (2, 20.0, 1.0, ["test ./...", "build ./..."]),
    "curl": (2, 1.5, 1.0, ["-s localhost:8000/health"]),
    "docker": (1, 45.0, 1.0, ["compose up -d", "build ."]),
    "sleep": (1, 30.0, 0.8, ["30", "60"]),
}
_FILES = [
    "src/app.py",
    "src/models.py",
    "tests/test_app.py",
    "README.md",
    "lib/util.ts",
    "cmd/main.go",
    "src/lib.rs",
    "docs/index.md",
]


def _pick(rng: random.Random, table: dict[str, tuple[Any, ...]]) -> str:
    names = list(table)
    return rng.choices(names, weights=[table[n][0] for n in names])[0]


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _lognorm(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


class _Session:
    """State of one generated session; `rounds()` yields its rows."""

    def __init__(self, rng: random.Random, n_rounds: int, private: bool) -> None:
        self.rng = rng
        self.n_rounds = n_rounds
        self.private = private
        self.provider = "claude" if rng.random() < 0.6 else "codex"
        claude = self.provider == "claude"
        self.model = rng.choice(
            ["claude-opus-4-8", "claude-sonnet-4-6"] if claude else ["gpt-5.4", "gpt-5.3-codex"]
        )
        self.project = f"project_{_hex(rng, 8)}"
        self.session_id = f"{self.provider}:{_uuid(rng)}"
        self.t = _T0 + rng.random() * _SPAN_S
        self.system = rng.randint(16000, 26000) if claude else rng.randint(9000, 14000)
        self.window = 200000 if claude else 260000
        self.ttl = 300.0 if claude else 3600.0
        self.context = self.system + min(int(_lognorm(rng, 30000, 1.0)), self.window // 2)
        self.last_end: float | None = None
        self.shell = "Bash" if claude else "exec_command"

    def _tool(self, index: int) -> tuple[dict[str, Any], float]:
        rng = self.rng
        table = _CLAUDE_TOOLS if self.provider == "claude" else _CODEX_TOOLS
        name = _pick(rng, table)
        if name == self.shell:
            exe = _pick(rng, _EXECUTABLES)
            _, med, sig, args = _EXECUTABLES[exe]
            args_pick = rng.choice(args)
            arg: dict[str, Any] = {"command": f"{exe} {args_pick}".strip()}
            if self.provider == "claude":
                arg["description"] = f"Run {exe}"
            else:
                arg["yield_time_ms"] = 10000
        else:
            _, med, sig = table[name]
            if name in ("Read", "Write", "Edit", "MultiEdit"):
                f = rng.choice(_FILES)
                arg = (
                    {"path": f}
                    if name == "Read"
                    else {"path": f, "content_chars": rng.randint(50, 4000)}
                )
            elif name == "apply_patch":
                arg = {
                    "input": "*** Begin Patch\n*** Update File: "
                    + rng.choice(_FILES)
                    + "\n"
                    + "+x\n" * rng.randint(1, 60)
                    + "*** End Patch"
                }
            elif name in ("Grep", "Glob"):
                arg = {"pattern": rng.choice(["TODO", "def .*", "**/*.py", "import"])}
            elif name in ("WebSearch", "web_search"):
                topic = rng.choice(["parse json", "fix ssl error", "use duckdb"])
                arg = {"query": "how to " + topic}
            elif name == "WebFetch":
                arg = {"url": "https://example.org/docs/" + _hex(rng, 6)}
            elif name == "Task":
                arg = {"description": "explore", "prompt": "Find the " + "x" * rng.randint(20, 400)}
            elif name == "write_stdin":
                arg = {"session_id": rng.randint(1, 9), "chars": ""}
            else:
                arg = {"todos": [{"content": "step", "status": "pending"}] * rng.randint(1, 6)}
        latency = min(max(_lognorm(rng, med, sig), 0.003), 1800.0)
        text = json.dumps(arg, separators=(",", ":"))
        if self.provider == "claude":
            call_id = "toolu_" + _hex(rng, 22)
        else:
            call_id = "call_" + "".join(rng.choice(_B62) for _ in range(24))
        tool = {
            "tool_index": index,
            "tool_name": name,
            "tool_call_id": call_id,
            "input": text,
            "input_chars": len(text),
        }
        return tool, latency

    def rounds(self) -> Iterator[dict[str, Any]]:
        rng = self.rng
        claude = self.provider == "claude"
        index = 0
        pending: list[dict[str, Any]] = []  # tool results feeding the next round
        turn_id: str | None = None
        turn_round = 0
        steps_left = 0
        while index < self.n_rounds:
            events: list[dict[str, Any]] = []
            if not pending:
                # a new user request after a human wait
                if self.last_end is not None:
                    wait = (
                        _lognorm(rng, 5400.0, 1.2)
                        if rng.random() < 0.15
                        else _lognorm(rng, 40.0, 1.5)
                    )
                    self.t = self.last_end + min(wait, 3 * 86400.0)
                steps_left = max(1, round(rng.expovariate(1 / 8.8) + 0.5))
                turn_id = _uuid(rng) if not claude else None
                turn_round = 0
                chars = int(_lognorm(rng, 160, 1.2)) + 1
                events.append(
                    {
                        "event_type": "user_message",
                        "timestamp": format_ts(self.t),
                        "source": "user.message" if claude else "event_msg.user_message",
                        "content_chars": chars,
                    }
                )
                first = "user_message"
                n_user, n_tool, user_chars, tool_chars = 1, 0, chars, 0
                append_new = max(5, int(chars / 3.5)) + int(_lognorm(rng, 300, 1.0))
            else:
                for p in pending:
                    events.append(
                        {
                            "event_type": "tool_result",
                            "timestamp": p["result_at"],
                            "source": "user.content.tool_result"
                            if claude
                            else "response_item.function_call_output",
                            "tool_call_id": p["tool_call_id"],
                            "result_chars": p["result_chars"],
                            "is_error": p["is_error"],
                        }
                    )
                self.t = max(p["_result_t"] for p in pending) + rng.uniform(0.002, 0.04)
                first = "tool_result"
                n_user, n_tool = 0, len(pending)
                user_chars, tool_chars = 0, sum(p["result_chars"] for p in pending)
                append_new = int(tool_chars / 3.6) + rng.randint(8, 40)
            gap = None if self.last_end is None else self.t - self.last_end
            # context before this round (the shared prefix candidate) and after the append
            previous = self.context
            compacted = previous + append_new > self.window
            if compacted:
                previous = self.system
                self.context = self.system + int(_lognorm(rng, 25000, 0.3))
            total = self.context + append_new
            if gap is None or compacted or gap > self.ttl:
                shared = self.system if (gap is None or gap <= 3600 or rng.random() < 0.5) else 0
            else:
                shared = previous
            if not claude:
                shared = (shared // 128) * 128
            prefix = min(shared, total - 1)
            steps_left -= 1
            last_step = steps_left <= 0 or index + 1 >= self.n_rounds
            n_tools = 0 if last_step else 1 + (rng.random() < 0.25) + (rng.random() < 0.12)
            output = max(1, int(_lognorm(rng, 214 if n_tools else 420, 1.1)))
            reasoning = None
            # generation: time to first output, then decode at ~40 tok/s
            t_out = self.t + 0.2 + total / 400000.0 + _lognorm(rng, 0.5, 0.5)
            speed = _lognorm(rng, 62.0, 0.45)
            has_reasoning = rng.random() < (0.8 if claude else 0.9)
            if not claude:
                reasoning = int(output * rng.uniform(0.1, 0.6)) if has_reasoning else 0
            t_cursor = t_out
            if has_reasoning:
                t_cursor += (reasoning or output * 0.3) / speed
                events.append(
                    {
                        "event_type": "reasoning",
                        "timestamp": format_ts(t_cursor),
                        "source": "assistant.content.thinking"
                        if claude
                        else "response_item.reasoning",
                        "content_chars": 0,
                    }
                )
            if n_tools == 0 or rng.random() < 0.6:
                t_cursor += output * 0.5 / speed
                events.append(
                    {
                        "event_type": "text",
                        "timestamp": format_ts(t_cursor),
                        "source": "assistant.content.text" if claude else "response_item.message",
                        "content_chars": int(output * 3.2),
                    }
                )
            tools: list[dict[str, Any]] = []
            pending = []
            for i in range(n_tools):
                tool, latency = self._tool(i)
                t_cursor += max(0.001, output * 0.5 / speed / n_tools)
                emitted_ms = round(t_cursor * 1000)
                result_ms = emitted_ms + max(1, round(latency * 1000))
                tool["emitted_at"] = format_ts(emitted_ms / 1000)
                tool["result_at"] = format_ts(result_ms / 1000)
                tool["tool_wall_latency_ms"] = result_ms - emitted_ms
                shell = tool["tool_name"] == self.shell
                tool["tool_internal_latency_ms"] = (
                    max(0, result_ms - emitted_ms - rng.randint(1, 60))
                    if not claude and shell
                    else None
                )
                tool["result_chars"] = int(_lognorm(rng, 2000, 1.3)) + 20
                tool["is_error"] = rng.random() < 0.06
                events.append(
                    {
                        "event_type": "tool_call",
                        "timestamp": tool["emitted_at"],
                        "source": "assistant.content.tool_use"
                        if claude
                        else "response_item.function_call",
                        "tool_call_id": tool["tool_call_id"],
                        "tool_name": tool["tool_name"],
                        "tool_index": i,
                    }
                )
                tools.append(tool)
                pending.append({**tool, "_result_t": result_ms / 1000})
            end = t_cursor
            if not claude:
                end += rng.uniform(0.003, 0.08)
                events.append(
                    {
                        "event_type": "usage_report",
                        "timestamp": format_ts(end),
                        "source": "event_msg.token_count",
                    }
                )
            self.last_end = end
            self.context = total + output
            events.sort(key=lambda e: e["timestamp"])
            if claude:
                round_id = "msg_" + _hex(rng, 24)
                uncached = rng.randint(1, 6) if total - prefix > 6 else total - prefix
                creation = total - prefix - uncached
            else:
                round_id = f"{turn_id}:{turn_round}"
            turn_round += 1
            tool_out = [{k: v for k, v in t.items() if self.private or k != "input"} for t in tools]
            row: dict[str, Any] = {
                "provider": self.provider,
                "project": self.project,
                "session_id": self.session_id,
                "round_index": index,
                "round_id": round_id,
                "turn_id": turn_id,
                "model": self.model,
                "input_tokens_total": total,
                "prefix_tokens": prefix,
                "newly_append_tokens": total - prefix,
                "claude_uncached_input_tokens": uncached if claude else None,
                "claude_cache_creation_input_tokens": creation if claude else None,
                "claude_cache_read_input_tokens": prefix if claude else None,
                "output_tokens": output,
                "reasoning_output_tokens": reasoning,
                "timing_events": events,
                "tools": tool_out,
                "current_input_event_count": n_user + n_tool,
                "current_user_message_count": n_user,
                "current_tool_result_count": n_tool,
                "current_user_message_chars": user_chars,
                "current_tool_result_chars": tool_chars,
                "current_input_chars": user_chars + tool_chars,
                "first_input_event_type": first,
                "store": ".claude" if claude else ".codex",
                "trace_key": f"{self.provider}:{self.session_id}:{round_id}",
            }
            yield row
            index += 1
            if last_step:
                pending = []


def generate(n_rounds: int, seed: int = 0, *, private: bool = True) -> Iterator[dict[str, Any]]:
    """Yield `n_rounds` TraceLab rows (sessions of ~83 rounds), deterministic for a given seed.

    `private=False` leaves out tools[].input, as in a public export.
    """
    rng = random.Random(seed)
    left = n_rounds
    while left > 0:
        size = min(left, max(1, int(_lognorm(rng, 60, 0.9))))
        yield from _Session(random.Random(rng.getrandbits(64)), size, private).rounds()
        left -= size


def main(argv: list[str] | None = None) -> int:
    """CLI: write a generated trace to a .jsonl or .jsonl.gz file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=357161, help="number of rounds")
    ap.add_argument("-o", "--output", required=True, help="output .jsonl or .jsonl.gz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--public", action="store_true", help="omit tools[].input")
    ns = ap.parse_args(argv)
    with open_text(ns.output, "w") as out:
        for row in generate(ns.rounds, ns.seed, private=not ns.public):
            out.write(json.dumps(row, separators=(",", ":")))
            out.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
