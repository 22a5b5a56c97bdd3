"""Tokenizer enricher: per-round token segments and a keyed block hash chain over the prompt.

Runs first in the ingest pipeline (raw content, off the proxy's hot path); writes
`round.annotations["tokens"]`, stored compactly by `tracetap.tokens.store.TokenStore`.
"""

from __future__ import annotations

import hashlib
import struct
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain as iter_chain
from itertools import compress, count
from typing import Any, overload

from tracetap.content import digest
from tracetap.model import Round
from tracetap.tokens.index import BlockIndex
from tracetap.tokens.render import (
    ANTHROPIC,
    RESPONSES,
    Stripped,
    carries_breakpoint,
    element_text,
    normalize_text,
    prompt_parts,
    renderer,
)
from tracetap.tokens.tokenizer import DEFAULT_TOKENIZER, Tokenizer, get_tokenizer, id_array

__all__ = [
    "CHAIN",
    "DEFAULT_BLOCK_SIZE",
    "GlobalReuse",
    "TokenEnricher",
    "block_hashes",
    "prompt_parts",
]

DEFAULT_BLOCK_SIZE = 64
HASH_BYTES = 8
CHAIN = "_chain"  # analysis key: the prompt's block hash chain, until GlobalReuse has run

RESPONSES_KEPT = 256  # Responses conversations kept to resolve `previous_response_id`


def _element_text(obj: Any, notes: set[str], api: str | None = None) -> str:
    """The measured rendering of one prompt element of an API (see render.py)."""
    return element_text(api, obj, notes)


def _differs(a: Any, b: Any) -> bool:
    """Not the very same element (two `Stripped` around one message are the same)."""
    if a is b:
        return False
    return not (type(a) is Stripped and type(b) is Stripped and a.obj is b.obj)


def _outputs(rnd: Round) -> dict[str, list[str]]:
    """Visible output text, reasoning and tool-call arguments from the normalized response."""
    text: list[str] = []
    reasoning: list[str] = []

    def walk(obj: Any, in_reasoning: bool) -> None:
        if isinstance(obj, dict):
            typ = obj.get("type")
            if typ in ("tool_use", "function_call", "custom_tool_call", "server_tool_use"):
                return  # counted from tool_calls
            r = in_reasoning or typ in ("reasoning", "thinking", "summary_text")
            for k, v in obj.items():
                if k in ("thinking", "reasoning_content", "reasoning") and isinstance(v, str):
                    reasoning.append(v)
                elif k in ("text", "content", "refusal") and isinstance(v, str):
                    (reasoning if r else text).append(v)
                elif k in ("tool_calls", "usage", "signature", "encrypted_content", "id"):
                    continue
                elif isinstance(v, dict | list):
                    walk(v, r or k in ("summary", "reasoning"))
        elif isinstance(obj, list):
            for v in obj:
                walk(v, in_reasoning)

    if rnd.response:
        walk(
            rnd.response.get("content")
            or rnd.response.get("output")
            or rnd.response.get("choices")
            or [],
            False,
        )
    return {
        "output_text": text,
        "output_reasoning": reasoning,
        "output_tool_args": [t.arguments for t in rnd.tool_calls],
    }


def block_hashes(
    tokens: array[int], block_size: int, key: bytes, *, start: int = 0, parent: bytes | None = None
) -> list[bytes]:
    """Keyed hashes of each full block, each chained to its parent (like vLLM prefix caching).

    From block `start` on, given the hash of the block before it (`parent`): the blocks before
    are those of a prompt sharing this one's first `start * block_size` tokens.
    """
    out: list[bytes] = []
    parent = parent if parent is not None else b"\0" * HASH_BYTES
    new = _keyed(key).copy
    view = memoryview(tokens)
    for i in range(start * block_size, len(tokens) - block_size + 1, block_size):
        h = new()
        h.update(parent)
        h.update(view[i : i + block_size])
        parent = h.digest()
        out.append(parent)
    return out


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hashlib.blake2b:
    """A blake2b state already keyed (copying it skips the key block on every hash)."""
    return hashlib.blake2b(
        key=hashlib.blake2b(key, digest_size=32).digest(), digest_size=HASH_BYTES
    )


@dataclass(slots=True)
class _Seen:
    uid: str
    request_at: float
    end_at: float | None
    tokens: array[int]  # its prompt's ids are tokens[:n_tokens] (a later round may grow the array)
    n_tokens: int
    hashes: list[bytes]
    chain: bytes  # the hashes joined
    bounds: list[int]
    elems: list[Any]  # the prompt's elements (tools, system blocks, messages) in order
    digests: list[str]  # of each element's text (the token-id cache key)
    notes: list[tuple[str, ...]]  # normalizations applied to each element
    ends: list[int]  # prompt length after each element


class TokenEnricher:
    """Pipeline transform; keeps a few recent prompts per session to diff chains against, and
    copies from the closest one the token ids and block hashes of the elements both start with."""

    def __init__(
        self,
        key: bytes,
        tokenizer: str | Tokenizer = DEFAULT_TOKENIZER,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        cache_elements: int = 20_000,
        sessions: int = 64,
        per_session: int = 3,
        global_hashes: int = 250_000,
        reuse: bool = True,
    ) -> None:
        self.tokenizer = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.key = key
        self.block_size = block_size
        self._ids: OrderedDict[str, array[int]] = OrderedDict()
        self._cache_elements = cache_elements
        self._recent: OrderedDict[str, deque[_Seen]] = OrderedDict()
        self._sessions = sessions
        self._per_session = per_session
        self._global = BlockIndex(global_hashes)  # block hash -> first round uid
        self.reuse = reuse  # False: every prompt tokenized and hashed from scratch (for tests)
        # True: leave reuse across sessions to a GlobalReuse that sees every session's rounds
        # in order (ingest split over processes); the analysis then carries its CHAIN.
        self.defer_global = False
        self.tokens_total = 0
        self.seconds_total = 0.0
        self._render = renderer(None)  # the rendering of the round being analysed
        # Responses: response id -> the conversation it ends (input items, then output items),
        # what a later request's `previous_response_id` continues
        self._responses: OrderedDict[str, list[Any]] = OrderedDict()

    # -- tokenizing ---------------------------------------------------------------------------
    def _encode(self, text: str) -> array[int]:
        """Token ids of a text (an output), through the same cache as the elements'."""
        return self._ids_for(digest(text.encode("utf-8", "surrogatepass")), text, None)

    def _ids_for(self, h: str, text: str | None, elem: Any) -> array[int]:
        """Token ids of an element whose text has digest `h` (encoded once, then cached)."""
        ids = self._ids.get(h)
        if ids is None:
            if text is None:
                text = normalize_text(self._render(elem), set())
            ids = id_array(self.tokenizer, text)
            self._ids[h] = ids
            if len(self._ids) > self._cache_elements:
                self._ids.popitem(last=False)
        else:
            self._ids.move_to_end(h)
        return ids

    def _info(self, elems: list[Any], i: int, known: list[Any]) -> tuple[str, tuple[str, ...], str]:
        """(text digest, normalizations, text) of element i, computed once per round."""
        info = known[i]
        if info is None:
            notes: set[str] = set()
            text = normalize_text(self._render(elems[i]), notes)
            info = known[i] = (
                digest(text.encode("utf-8", "surrogatepass")),
                tuple(sorted(notes)),
                text,
            )
        return info

    def _base(
        self, recent: deque[_Seen] | None, elems: list[Any], known: list[Any]
    ) -> tuple[_Seen | None, int]:
        """The recent prompt of this session whose elements start like this one's the longest
        (same objects, or same text), and how many elements they share."""
        base, common = None, 0
        for seen in reversed(recent) if recent and self.reuse else ():  # newest first
            n = min(len(seen.elems), len(elems))
            if base is not None and n <= common:
                continue  # it could at most tie, and a tie goes to the newer round
            i = n
            # only the elements that are not the very objects it had are compared, by text
            for j in compress(count(), map(_differs, seen.elems, elems)):
                if self._info(elems, j, known)[0] != seen.digests[j]:
                    i = j
                    break
            if base is None or i > common:
                base, common = seen, i
        return base, common

    def _prompt(
        self, elems: list[Any], known: list[Any], base: _Seen | None, common: int
    ) -> tuple[array[int], list[int], list[str], list[tuple[str, ...]]]:
        """The prompt's token ids: the first `common` elements copied from `base`, the rest
        from the id cache (encoding what it lacks)."""
        if base is not None and common:
            cut = base.ends[common - 1]
            # The base's whole prompt, its array not grown by another round since: grow it in
            # place (its rounds keep their n_tokens) instead of copying the history's ids.
            prompt = base.tokens if cut == len(base.tokens) else base.tokens[:cut]
            ends, digests = base.ends[:common], base.digests[:common]
            notes = base.notes[:common]
        else:
            prompt, ends, digests, notes = array("I"), [], [], []
        prev = base.elems if base is not None else []
        for i in range(common, len(elems)):
            text = None
            if known[i] is None and i < len(prev) and not _differs(elems[i], prev[i]):
                assert base is not None
                h, nt = base.digests[i], base.notes[i]
            else:
                h, nt, text = self._info(elems, i, known)
            prompt.extend(self._ids_for(h, text, elems[i]))
            ends.append(len(prompt))
            digests.append(h)
            notes.append(nt)
        return prompt, ends, digests, notes

    def _earlier(self, rnd: Round) -> tuple[list[Any] | None, str | None]:
        """The conversation a Responses `previous_response_id` continues, and the note saying
        whether it was resolved (None: the request continues nothing)."""
        prev = (rnd.envelope or {}).get("previous_response_id") if rnd.api == RESPONSES else None
        if not isinstance(prev, str) or not prev:
            return None, None
        earlier = self._responses.get(prev)
        if earlier is None:
            return None, "previous_response_id-unresolved"
        self._responses.move_to_end(prev)
        return earlier, "previous_response_id"

    def _keep_response(self, rnd: Round, parts: dict[str, list[Any]]) -> None:
        """Remember the conversation this response ends, for requests that continue it."""
        assert rnd.response_id is not None and rnd.response is not None
        output = rnd.response.get("output")
        items = [*parts["history"], *parts["new_input"]]
        if not rnd.system:  # leading developer messages are input items, carried over
            items = [*parts["system"], *items]
        self._responses[rnd.response_id] = [*items, *(output if isinstance(output, list) else [])]
        while len(self._responses) > RESPONSES_KEPT:
            self._responses.popitem(last=False)

    def __call__(self, rnd: Round) -> Round:
        started = time.perf_counter()
        try:
            rnd.annotations["tokens"] = self.analyse(rnd)
        except Exception as exc:  # token facts are optional; the round is not
            rnd.annotations["tokens"] = {"error": f"{type(exc).__name__}"}
        self.seconds_total += time.perf_counter() - started
        return rnd

    def analyse(self, rnd: Round) -> dict[str, Any]:
        started = time.perf_counter()
        self._render = renderer(rnd.api)
        earlier, chain_note = self._earlier(rnd)
        parts = prompt_parts(rnd, earlier)
        elems = [e for part in parts.values() for e in part]
        sid = f"{rnd.provider}:{rnd.agent_session_id or rnd.thread_key or '-'}"
        recent = self._recent.get(sid)
        known: list[tuple[str, tuple[str, ...], str | None] | None] = [None] * len(elems)
        base, common = self._base(recent, elems, known)
        prompt, ends, digests, el_notes = self._prompt(elems, known, base, common)
        bounds: list[int] = []
        segments: dict[str, int] = {}
        at = 0
        for name, part in parts.items():
            before = ends[at - 1] if at else 0
            at += len(part)
            after = ends[at - 1] if at else 0
            segments[name] = after - before
            bounds.append(after)
        notes = set(iter_chain.from_iterable(filter(None, el_notes)))  # most have none
        if chain_note:
            notes.add(chain_note)
        if rnd.api == RESPONSES and rnd.response_id and rnd.response:
            self._keep_response(rnd, parts)
        for name, texts in _outputs(rnd).items():
            segments[name] = sum(len(self._encode(t)) for t in texts if t)
        start = ends[common - 1] // self.block_size if base is not None and common else 0
        hashes = base.hashes[:start] if base is not None else []
        new = block_hashes(
            prompt, self.block_size, self.key, start=start, parent=hashes[-1] if hashes else None
        )
        hashes += new
        chain = (base.chain[: start * HASH_BYTES] if base is not None else b"") + b"".join(new)
        parent = None
        shared = 0
        if recent:
            for seen in recent:  # the recent round sharing the longest prefix (main vs subagent)
                n = _common(seen.hashes, hashes)
                if (
                    parent is None
                    or n > shared
                    or (n == shared and seen.request_at >= parent.request_at)
                ):
                    parent, shared = seen, n
        reuse_prev = 0
        if parent is not None:
            reuse_prev = shared * self.block_size + _lcp(
                parent.tokens, parent.n_tokens, prompt, shared * self.block_size
            )
        if self.defer_global:  # the pipeline runs it in order over every session's rounds
            reuse_any, any_uid = None, None
        else:
            reuse_any, any_uid = self._global.reuse(hashes, rnd.uid, shared)
        seen = _Seen(
            rnd.uid,
            rnd.request_at,
            rnd.end_at,
            prompt,
            len(prompt),
            hashes,
            chain,
            bounds,
            elems,
            digests,
            el_notes,
            ends,
        )
        self._recent.setdefault(sid, deque(maxlen=self._per_session)).append(seen)
        self._recent.move_to_end(sid)
        while len(self._recent) > self._sessions:
            self._recent.popitem(last=False)
        u = rnd.usage
        elapsed = time.perf_counter() - started
        self.tokens_total += len(prompt)
        info = {
            "tokenizer": self.tokenizer.name,
            "block_size": self.block_size,
            "normalized": sorted(notes),
            "segments": segments,
            "segment_source": {
                "tools": "estimated",
                "system": "estimated",
                "history": "estimated",
                "new_input": "estimated",
                "output_text": "estimated",
                "output_reasoning": "estimated",
                "output_tool_args": "estimated",
            },
            "provider": {
                "input_tokens_total": u.input_tokens_total,
                "cached_tokens": u.cached_tokens,
                "output_tokens": u.output_tokens,
                "reasoning_tokens": u.reasoning_tokens,
            },
            "prompt_tokens": len(prompt),
            "bounds": bounds,
            "breakpoints": (
                [ends[i] for i, e in enumerate(elems) if carries_breakpoint(e)]
                if rnd.api == ANTHROPIC
                else []
            ),
            "parent_uid": parent.uid if parent else None,
            "parent_prompt_tokens": parent.n_tokens if parent else None,
            "parent_bounds": parent.bounds if parent else None,
            "gap_s": (rnd.request_at - (parent.end_at or parent.request_at)) if parent else None,
            "reuse_prev_tokens": reuse_prev,
            "shared_blocks": shared,
            "n_blocks": len(hashes),
            "new_hashes": chain[shared * HASH_BYTES :].hex(),
            "reuse_any_blocks": reuse_any,
            "reuse_any_uid": any_uid,
            "elapsed_ms": round(elapsed * 1000, 3),
            "tokens_s": round(len(prompt) / elapsed) if elapsed > 0 else None,
        }
        if self.defer_global:
            info[CHAIN] = chain
        return info


class GlobalReuse:
    """Reuse across sessions for analyses of deferring enrichers: the leading blocks of a
    round's prompt that any earlier round had (and its uid), from one bounded index."""

    def __init__(self, limit: int = 250_000) -> None:
        self.index = BlockIndex(limit)

    def __call__(self, info: dict[str, Any], uid: str) -> None:
        chain = info.pop(CHAIN)
        hashes = _Hashes(chain)
        # the blocks shared with the session's previous prompt were most likely indexed
        info["reuse_any_blocks"], info["reuse_any_uid"] = self.index.reuse(
            hashes, uid, info.get("shared_blocks")
        )


class _Hashes(Sequence[int]):
    """A chain's 8-byte block hashes as integers (cheaper keys, same answers), unpacked when
    read: of a round's hundreds of blocks, the index reads a few to find the known prefix,
    and the new ones."""

    __slots__ = ("_chain", "_n")

    def __init__(self, chain: bytes) -> None:
        self._chain = chain
        self._n = len(chain) // HASH_BYTES

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> list[int]: ...

    def __getitem__(self, i: int | slice) -> int | list[int]:
        if isinstance(i, slice):
            start, stop, step = i.indices(self._n)
            if step != 1:
                return self[start:stop][::step]
            return list(
                struct.unpack_from(f"<{max(0, stop - start)}Q", self._chain, start * HASH_BYTES)
            )
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("block index out of range")
        return _U64.unpack_from(self._chain, i * HASH_BYTES)[0]


_U64 = struct.Struct("<Q")


def _common(a: list[bytes], b: list[bytes]) -> int:
    n = min(len(a), len(b))
    if n and a[n - 1] == b[n - 1]:  # chained: the last shared block implies all before it
        return n
    lo, hi = 0, n  # binary search works because equality of block i implies all < i
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[mid - 1] == b[mid - 1]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _lcp(a: array[int], a_len: int, b: array[int], start: int) -> int:
    """Extra common tokens of a[:a_len] and b after `start` (both agree before it)."""
    n = min(a_len, len(b))
    i = start
    while i < n and a[i] == b[i]:
        i += 1
    return i - start
