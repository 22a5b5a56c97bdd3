"""Synthetic prompts with the recorded shape: token ids (or text) whose prefix reuse across
rounds and sessions matches the trace, so a server's prefix cache sees the same reuse pattern.

Round i's prompt is round i-1's prompt plus its output, cut to the recorded prefix length, plus
fresh tokens of the recorded append length. The output is the one the server generated when the
runner reports it (`observe_output`): a server's prefix cache holds the blocks of what it
generated, not of tokens the client made up, so only then can the next prompt hit them; until
then a synthetic output stands in. A session's first prompt starts with the recorded prefix
taken from one token stream per agent (`group`, the provider): that prefix is the system prompt
and tools other sessions of the same agent had already put in the cache, so sessions share it
here as they did in the recording. `warmup` gives, per agent, the longest such prefix, for the
runner to send before the replay (the recording's cache held it before its first session).

Rounds carrying block keys (TraceLab `tt_block_hashes`, Mooncake `hash_ids`) instead take each
block's tokens from its key, so sessions that shared a prefix in the recording share the same
tokens here.

Text prompts (chat endpoint): without a tokenizer each token id becomes one word `w<id>`, which
serve-sim counts as one token (an approximation for real servers, whose chat template and
tokenizer add and merge tokens). With `hf:tokenizer.json` the ids are decoded by that tokenizer.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tracetap.replay.plan import Plan, PlanRound

__all__ = [
    "BuiltPrompt",
    "PromptBuilder",
    "Tokenizer",
    "load_tokenizer",
    "request_body",
    "words_to_ids",
]

_WORD = re.compile(r"w(\d+)")


def words_to_ids(text: str) -> list[int]:
    """The default word-per-token scheme's ids for a text (`w<id>` words; others hashed)."""
    out = []
    for word in text.split():
        m = _WORD.fullmatch(word)
        out.append(
            int(m.group(1))
            if m
            else int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
        )
    return out


class Tokenizer:
    """A local Hugging Face tokenizer.json (nothing is downloaded)."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as _HF

        self._tok = _HF.from_file(str(path))
        self.vocab_size = self._tok.get_vocab_size()

    def decode(self, ids: np.ndarray) -> str:
        return self._tok.decode([int(i) for i in ids])

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        return len(self.encode(text))


def load_tokenizer(spec: str | None) -> Tokenizer | None:
    """`hf:PATH/tokenizer.json` -> Tokenizer; None -> None (synthetic ids, word text)."""
    if not spec:
        return None
    kind, _, path = spec.partition(":")
    if kind != "hf" or not path:
        raise ValueError(f"tokenizer must be hf:PATH/tokenizer.json, got {spec!r}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    return Tokenizer(path)


@dataclass(slots=True)
class BuiltPrompt:
    """One round's prompt: token ids, and how much of it the server has already seen as a
    prompt (`reusable`: the part of the planned prefix a prefix cache can serve)."""

    tokens: np.ndarray
    planned_prefix: int
    reusable: int

    def text(self, tokenizer: Tokenizer | None) -> str:
        if tokenizer is not None:
            return tokenizer.decode(self.tokens)
        return " ".join(f"w{t}" for t in self.tokens.tolist())


class PromptBuilder:
    """Deterministic synthetic token ids in [low, high) for every session and round."""

    def __init__(self, *, seed: int = 0, vocab_size: int = 32000, low: int = 100) -> None:
        if vocab_size <= low + 1:
            low = 0
        self.seed, self.low, self.high = seed, low, vocab_size
        # Per session: the last prompt + its output, how much of that the server has cached,
        # the index of the last round built, and the length of the agent's shared head.
        self._prev: dict[str, np.ndarray] = {}
        self._prev_prompt_len: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._head: dict[str, int] = {}
        # Per agent: how much of its shared token stream the server has been sent.
        self._group_seen: dict[str, int] = {}
        self._seen_keys: set[str] = set()
        self._lock = threading.Lock()

    def _fresh(self, label: str, n: int) -> np.ndarray:
        """n ids in [low, high) from a SHAKE-128 stream keyed by seed and label (fast for small
        n, no generator object per call)."""
        if n <= 0:
            return np.empty(0, np.int64)
        raw = hashlib.shake_128(f"{self.seed}|{label}".encode()).digest(4 * n)
        return (np.frombuffer(raw, dtype=np.uint32) % (self.high - self.low)).astype(
            np.int64
        ) + self.low

    def _shared(self, group: str, n: int) -> np.ndarray:
        """The first n ids of the agent's shared stream (a prefix of any longer request)."""
        return self._fresh(f"shared|{group}", n)

    def warmup(self, plan: Plan) -> list[tuple[str, BuiltPrompt]]:
        """Per agent, a prompt of the longest prefix a session of it starts with (as recorded):
        sent before the replay, it puts in the cache what the recording's cache already held.
        Counted as seen from then on."""
        longest: dict[str, int] = {}
        for s in plan.sessions:
            if s.group is None or not s.rounds or s.rounds[0].block_keys:
                continue
            first = s.rounds[0]
            n = min(first.prefix_len, first.input_len)
            longest[s.group] = max(longest.get(s.group, 0), n)
        out = []
        with self._lock:
            for group, n in sorted(longest.items()):
                if n <= 0:
                    continue
                seen = self._group_seen.get(group, 0)
                out.append((group, BuiltPrompt(self._shared(group, n), 0, min(n, seen))))
                self._group_seen[group] = max(seen, n)
        return out

    def build(self, session_id: str, rnd: PlanRound, group: str | None = None) -> BuiltPrompt:
        """The prompt of `rnd` (call in round order within a session); `group`: the agent whose
        sessions share the first round's recorded prefix."""
        total = rnd.input_len
        if rnd.block_keys and rnd.block_size:
            bs = rnd.block_size
            parts = [self._fresh(f"key|{k}", bs) for k in rnd.block_keys[: -(-total // bs)]]
            tokens = np.concatenate(parts)[:total] if parts else np.empty(0, np.int64)
            if len(tokens) < total:
                tail = self._fresh(f"{session_id}|{rnd.index}|tail", total - len(tokens))
                tokens = np.concatenate([tokens, tail])
            full = [k for j, k in enumerate(rnd.block_keys) if (j + 1) * bs <= total]
            with self._lock:
                reuse = 0
                for k in full:
                    if k not in self._seen_keys:
                        break
                    reuse += 1
                self._seen_keys.update(full)
            reusable = min(reuse * bs, total)
        elif session_id not in self._prev:
            # First round: its recorded prefix is the agent's shared head.
            keep = min(rnd.prefix_len, total) if group is not None else 0
            head = self._shared(group, keep) if group is not None else np.empty(0, np.int64)
            fresh = self._fresh(f"{session_id}|{rnd.index}|in", total - keep)
            tokens = np.concatenate([head, fresh])
            reusable = 0
            if group is not None:
                with self._lock:
                    seen = self._group_seen.get(group, 0)
                    reusable = min(keep, seen)
                    self._group_seen[group] = max(seen, keep)
            self._head[session_id] = keep
        else:
            prev = self._prev[session_id]
            keep = min(rnd.prefix_len, len(prev))
            fresh = self._fresh(f"{session_id}|{rnd.index}|in", total - keep)
            tokens = np.concatenate([prev[:keep], fresh])
            reusable = min(keep, self._seen.get(session_id, 0))
            shared = self._head.get(session_id, 0)
            if shared and group is not None:  # the head may be cached by other sessions' prompts
                with self._lock:
                    reusable = max(reusable, min(keep, shared, self._group_seen.get(group, 0)))
        out = self._fresh(f"{session_id}|{rnd.index}|out", rnd.output_len)
        self._prev[session_id] = np.concatenate([tokens, out])
        self._prev_prompt_len[session_id] = len(tokens)
        self._seen[session_id] = len(tokens)
        self._last[session_id] = rnd.index
        return BuiltPrompt(tokens, rnd.prefix_len, reusable)

    def observe_output(self, session_id: str, index: int, output: list[int] | None) -> None:
        """The ids the server generated for round `index`: the next prompt continues with them
        and they count as cached (the server keeps its completed requests' blocks). Ignored if
        a later round was built meanwhile, or when the server did not say (None)."""
        if output is None or self._last.get(session_id) != index:
            return
        n = self._prev_prompt_len[session_id]
        ids = np.asarray(output, dtype=np.int64)
        self._prev[session_id] = np.concatenate([self._prev[session_id][:n], ids])
        self._seen[session_id] = n + len(ids)

    def forget(self, session_id: str) -> None:
        """Drop a finished session's state."""
        for state in (self._prev, self._prev_prompt_len, self._seen, self._last, self._head):
            state.pop(session_id, None)


def request_body(
    prompt: BuiltPrompt,
    *,
    model: str,
    endpoint: str,
    max_tokens: int,
    ignore_eos: bool,
    tokenizer: Tokenizer | None,
) -> bytes:
    """The JSON body of a streaming request for `endpoint` ("completions" or "chat")."""
    import orjson

    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max(1, max_tokens),
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
    }
    if ignore_eos:
        body["ignore_eos"] = True
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt.text(tokenizer)}]
    else:
        body["prompt"] = prompt.tokens
        body["return_token_ids"] = True  # vLLM: the generated ids, fed back into the next prompt
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
