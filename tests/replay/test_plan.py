"""Plans from TraceLab rows, both replay CSV headers and Mooncake lines; prompt shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tracetap.replay.plan import cap_idle, load_plan, plan_from_rows
from tracetap.replay.prompts import PromptBuilder, load_tokenizer, words_to_ids
from tracetap.tracelab import write_rows

from .traces import row

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"


def test_gap_splits_into_tool_and_human_time() -> None:
    rows = [
        # Round 0: output ends at 2 s; tools 1.5 s (internal 1.0 s preferred) + 0.5 s wall.
        row(
            "s",
            0,
            at=0.0,
            end=2.0,
            prefix=0,
            append=100,
            output=10,
            tools=[(1500, 1000), (500, None)],
        ),
        # Next input at 5 s: gap 3 s = 1.5 s tool + 1.5 s human.
        row("s", 1, at=5.0, end=6.0, prefix=110, append=20, output=5, tools=[(9000, None)]),
        # Gap 0.5 s but tools claim 9 s: tool time clipped to the gap.
        row("s", 2, at=6.5, end=7.0, prefix=135, append=5, output=1),
    ]
    plan = plan_from_rows(reversed(rows))
    [s] = plan.sessions
    assert [r.at for r in s.rounds] == pytest.approx([0.0, 5.0, 6.5])
    assert (s.rounds[0].tool_wait, s.rounds[0].human_wait) == pytest.approx((1.5, 1.5))
    assert (s.rounds[1].tool_wait, s.rounds[1].human_wait) == pytest.approx((0.5, 0.0))
    assert (s.rounds[2].tool_wait, s.rounds[2].human_wait) == (0.0, 0.0)
    assert (s.rounds[1].prefix_len, s.rounds[1].append_len, s.rounds[1].output_len) == (110, 20, 5)


def test_fixture_loads_two_sessions_in_start_order() -> None:
    plan = load_plan(str(FIXTURE))
    assert plan.n_rounds == 19 and len(plan.sessions) == 2
    assert plan.sessions[0].start == 0.0 < plan.sessions[1].start
    assert all(r.tool_wait >= 0 and r.human_wait >= 0 for s in plan.sessions for r in s.rounds)


def test_replay_csv_both_headers(tmp_path: Path) -> None:
    new = tmp_path / "new.csv"
    new.write_text(
        "session_id,arrival_time,round_idx,prefix_len,input_len,output_len,"
        "tool_wait_after_ms\nb,1500,0,0,50,5,0\na,0,1,60,10,3,0\na,0,0,0,60,4,2000\n"
    )
    old = tmp_path / "old.csv"
    old.write_text(
        "session_id,round_idx,prefix_len,input_len,output_len,tool_wait_after_ms\n"
        "a,0,0,60,4,2000\na,1,60,10,3,0\n"
    )
    plan = load_plan(str(new))
    assert [s.session_id for s in plan.sessions] == ["a", "b"]
    a = plan.sessions[0]
    assert [(r.prefix_len, r.append_len, r.output_len) for r in a.rounds] == [
        (0, 60, 4),
        (60, 10, 3),
    ]
    assert a.rounds[0].tool_wait == 2.0 and a.rounds[1].at == 2.0
    assert plan.sessions[1].start == 1.5
    old_plan = load_plan(str(old))
    assert old_plan.sessions[0].start == 0.0 and old_plan.n_rounds == 2


def test_mooncake_lines_are_single_requests_with_block_keys(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    lines = [
        {"timestamp": 0, "input_length": 40, "output_length": 2, "hash_ids": [0, 1, 2]},
        {"timestamp": 250, "input_length": 30, "output_length": 3, "hash_ids": [0, 1]},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    plan = load_plan(str(path), block_size=16)
    assert plan.source == "mooncake" and len(plan.sessions) == 2
    assert plan.sessions[1].rounds[0].at == 0.25
    b = PromptBuilder()
    p0 = b.build("x", plan.sessions[0].rounds[0])
    p1 = b.build("y", plan.sessions[1].rounds[0])
    assert len(p0.tokens) == 40 and len(p1.tokens) == 30
    assert np.array_equal(p0.tokens[:30], p1.tokens[:30])
    assert p1.reusable == 16  # block 0 seen as a full block; block 1 is partial (30 < 32)


def test_prompt_chain_reuses_previous_prompt_plus_output() -> None:
    rows = [
        row("s", 0, at=0, end=1, prefix=0, append=40, output=8),
        row("s", 1, at=2, end=3, prefix=44, append=6, output=2),
        row("s", 2, at=4, end=5, prefix=10, append=90, output=1),
    ]
    s = plan_from_rows(rows).sessions[0]
    b = PromptBuilder(seed=3)
    p0, p1, p2 = (b.build("s", r) for r in s.rounds)
    assert (len(p0.tokens), len(p1.tokens), len(p2.tokens)) == (40, 50, 100)
    assert np.array_equal(p1.tokens[:40], p0.tokens)
    assert p1.reusable == 40 and p1.planned_prefix == 44  # 4 of the prefix were output tokens
    assert np.array_equal(p2.tokens[:10], p0.tokens[:10]) and p2.reusable == 10
    again = PromptBuilder(seed=3).build("s", s.rounds[0])
    assert np.array_equal(again.tokens, p0.tokens)
    assert not np.array_equal(PromptBuilder(seed=3).build("t", s.rounds[0]).tokens, p0.tokens)


def test_hf_tokenizer_from_a_local_file(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(500)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    loaded = load_tokenizer(f"hf:{path}")
    assert loaded is not None and loaded.vocab_size == 500
    prompt = PromptBuilder(vocab_size=loaded.vocab_size).build(
        "s",
        plan_from_rows([row("s", 0, at=0, end=1, prefix=0, append=64, output=1)])
        .sessions[0]
        .rounds[0],
    )
    text = prompt.text(loaded)
    assert loaded.count(text) == 64
    assert words_to_ids(text) == prompt.tokens.tolist()
    with pytest.raises(ValueError):
        load_tokenizer("tiktoken:cl100k")
    with pytest.raises(FileNotFoundError):
        load_tokenizer(f"hf:{tmp_path / 'missing.json'}")


def test_jsonl_input_detected_as_tracelab(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    with path.open("w") as fh:
        write_rows([row("s", 0, at=0, end=1, prefix=0, append=5, output=1)], fh)
    assert load_plan(str(path)).source == "tracelab"
    with pytest.raises(FileNotFoundError):
        load_plan(str(tmp_path / "nope.jsonl"))


def test_cap_idle_shortens_long_stretches_between_starts() -> None:
    plan = load_plan(str(FIXTURE))
    before = [[r.at for r in s.rounds] for s in plan.sessions]
    cap_idle(plan, 30.0)
    after = [[r.at for r in s.rounds] for s in plan.sessions]
    assert after[0] == before[0]  # the first session's rounds are never 30 s apart
    # The 72-day pause before the second session becomes 30 s after the first's last start.
    assert after[1][0] == pytest.approx(before[0][-1] + 30.0)
    assert [b - after[1][0] for b in after[1]] == pytest.approx(
        [b - before[1][0] for b in before[1]]
    )
