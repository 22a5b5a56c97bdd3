"""Synthetic prompts with the recorded shape: token ids (or text) whose prefix reuse across
rounds and sessions matches the trace, so a server's prefix cache sees the same reuse pattern.

Round i's prompt is round i-1's prompt plus its (synthetic) output, cut to the recorded prefix
length, plus fresh tokens of the recorded append length. Rounds carrying block keys (TraceLab
`tt_block_hashes`, Mooncake `hash_ids`) instead take each block's tokens from its key, so
sessions that shared a prefix in the recording share the same tokens here.

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

from tracetap.replay.plan import PlanRound

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

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)


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
        self._prev: dict[str, np.ndarray] = {}
        self._prev_prompt_len: dict[str, int] = {}
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

    def build(self, session_id: str, rnd: PlanRound) -> BuiltPrompt:
        """The prompt of `rnd` (call in round order within a session)."""
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
        else:
            prev = self._prev.get(session_id, np.empty(0, np.int64))
            keep = min(rnd.prefix_len, len(prev))
            fresh = self._fresh(f"{session_id}|{rnd.index}|in", total - keep)
            tokens = np.concatenate([prev[:keep], fresh])
            reusable = min(keep, self._prev_prompt_len.get(session_id, 0))
        out = self._fresh(f"{session_id}|{rnd.index}|out", rnd.output_len)
        self._prev[session_id] = np.concatenate([tokens, out])
        self._prev_prompt_len[session_id] = len(tokens)
        return BuiltPrompt(tokens, rnd.prefix_len, reusable)

    def forget(self, session_id: str) -> None:
        """Drop a finished session's state."""
        self._prev.pop(session_id, None)
        self._prev_prompt_len.pop(session_id, None)


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
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
