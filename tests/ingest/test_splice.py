"""Parsing re-sent history from earlier rounds' objects (tracetap.ingest.splice) gives exactly
what parsing the whole body gives: same values, same JSON types, whatever the body holds."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from tracetap.ingest import splice
from tracetap.ingest.splice import MIN_BODY, parse_resent

PARTS = {"system": "system", "tools": "tools", "messages": "messages"}


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _line(body: dict[str, Any]) -> splice.Line:
    """What the interner keeps of a round: each part's elements and their serializations."""
    keys = {p: [orjson.dumps(e) for e in body.get(f) or []] for f, p in PARTS.items()}
    objs = {p: list(body.get(f) or []) for f, p in PARTS.items()}
    return splice.Line(keys, objs)


def _exact(a: Any) -> bytes:
    return orjson.dumps(a)  # distinguishes 1, 1.0 and true, and key order


def _message(rng: random.Random, i: int) -> dict[str, Any]:
    kind = rng.randrange(6)
    if kind == 0:  # a tool input with fields named as the body's own
        return {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": f"t{i}",
                    "name": "Task",
                    "input": {
                        "messages": [{"role": "user", "content": "x"}],
                        "tools": [],
                        "n": rng.choice([1, 1.0, True]),
                    },
                }
            ],
        }
    if kind == 1:  # the field names inside text, escaped
        return {"role": "user", "content": f'see {{"messages":[{i}]}} and "tools":[ ' * 40}
    if kind == 2:
        return {"role": "user", "content": "ünïcode ✓ \u2028 \t\n\\ " * 60}
    return {
        "role": rng.choice(["user", "assistant"]),
        "content": f"step {i} " * rng.randint(20, 200),
    }


def _session(rng: random.Random, rounds: int) -> list[dict[str, Any]]:
    system = [{"type": "text", "text": "billing 0"}, {"type": "text", "text": "You are. " * 300}]
    tools = [
        {
            "name": f"T{i}",
            "input_schema": {"type": "object", "properties": {"messages": {"type": "array"}}},
        }
        for i in range(5)
    ]
    messages: list[dict[str, Any]] = []
    bodies = []
    for i in range(rounds):
        messages.append(_message(rng, i))
        if rng.random() < 0.15 and len(messages) > 2:  # an edit deep in the history
            messages[rng.randrange(len(messages) - 1)] = _message(rng, 1000 + i)
        system = [{"type": "text", "text": f"billing {i}"}, system[1]]
        order = ["model", "messages", "system", "tools"]
        if rng.random() < 0.3:
            order = ["model", "tools", "system", "messages"]
        values = {"model": "m", "messages": messages, "system": system, "tools": tools}
        body = {k: json.loads(json.dumps(values[k])) for k in order}
        body["metadata"] = {"messages": [1, 2]}  # a nested field of the same name, later
        bodies.append(body)
    return bodies


@pytest.mark.parametrize("seed", range(8))
def test_equals_parsing_the_whole_body(seed: int) -> None:
    rng = random.Random(seed)
    lines: list[splice.Line] = []
    skipped_any = 0
    for body in _session(rng, 40):
        raw = _compact(body)
        value, skipped = parse_resent(raw, PARTS, lines)
        assert _exact(value) == _exact(orjson.loads(raw))
        skipped_any += skipped
        if skipped:  # the re-sent elements are the earlier objects themselves: the first
            # message's (or the second's, when an edit changed the first), and the system
            # block after the billing line, which changes every round
            assert any(
                value["messages"][i] is m
                for line in lines
                for i, m in enumerate(line.objs["messages"][:2])
            )
            assert any(value["system"][1] is line.objs["system"][1] for line in lines)
        lines = (lines + [_line(value)])[-3:]
    assert skipped_any > 40 * MIN_BODY


def test_spaced_or_pretty_bodies_are_parsed_whole() -> None:
    bodies = _session(random.Random(1), 10)
    lines = [_line(b) for b in bodies[:-1]]
    for raw in (json.dumps(bodies[-1]).encode(), json.dumps(bodies[-1], indent=2).encode()):
        value, skipped = parse_resent(raw, PARTS, lines)
        assert skipped == 0 and _exact(value) == _exact(orjson.loads(raw))


def test_a_body_holding_the_marker_is_parsed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = _session(random.Random(2), 10)
    lines = [_line(b) for b in bodies[:-1]]
    body = dict(bodies[-1], note="abc123")
    monkeypatch.setattr(splice, "_NONCE", b"abc")
    value, skipped = parse_resent(_compact(body), PARTS, lines)
    assert skipped == 0 and value == body


def test_malformed_and_truncated_bodies_stay_unparsed() -> None:
    bodies = _session(random.Random(3), 10)
    lines = [_line(b) for b in bodies[:-1]]
    raw = _compact(bodies[-1])
    for bad in (
        raw[:-1],
        raw[: len(raw) // 2],
        raw.replace(b'"model"', b"model", 1),
        raw + b"}",
        b"\xff" + raw,
    ):
        assert parse_resent(bad, PARTS, lines) == (None, 0)


def test_other_numbers_of_the_same_value_are_not_taken() -> None:
    first = {"messages": [{"role": "user", "content": "x" * MIN_BODY, "n": 1}] * 3}
    lines = [_line(first)]
    for n in (1.0, True, 10):
        body = {"messages": [{"role": "user", "content": "x" * MIN_BODY, "n": n}] * 3}
        value, skipped = parse_resent(_compact(body), PARTS, lines)
        assert skipped == 0 and _exact(value) == _exact(body)
    value, skipped = parse_resent(_compact(first), PARTS, lines)
    assert skipped > 3 * MIN_BODY and _exact(value) == _exact(first)


def test_a_nested_copy_of_the_history_before_it_is_not_taken_for_it() -> None:
    """A field of the same name holding the very same elements, nested earlier in the body
    (a tool's example): the marker shows the cut was not the top-level array's."""
    history = [{"role": "user", "content": f"turn {i} " * 400} for i in range(4)]
    first = {"tools": [{"name": "T", "examples": {"messages": history}}], "messages": history}
    lines = [_line(first)]
    body = {
        "tools": [{"name": "T", "examples": {"messages": history[:3]}}],
        "messages": history + [{"role": "user", "content": "new"}],
    }
    value, _ = parse_resent(_compact(body), PARTS, lines)
    assert _exact(value) == _exact(body)


def test_an_element_that_only_starts_like_an_earlier_one_is_parsed() -> None:
    """Bare numbers and strings as elements: 1 is a prefix of 12, "a" of "ab" (not of "ab"'s
    bytes, but 1.5 of 1.55): only whole elements are taken."""
    big = "y" * MIN_BODY
    first = {"messages": [big, big, 1, 1.5, "a"]}
    lines = [_line(first)]
    for tail in ([big, big, 12], [big, big, 1.55], [big, big, 1, 1.5, "ab"], [big, big, 1]):
        body = {"messages": tail}
        value, skipped = parse_resent(_compact(body), PARTS, lines)
        assert _exact(value) == _exact(body)
        assert skipped > MIN_BODY  # the two big strings were taken


def _fresh_join(line: splice.Line, part: str) -> tuple[bytes, list[int]]:
    keys = list(line.keys.get(part) or ())
    run = keys[: keys.index(None)] if None in keys else keys
    ends, pos = [], -1
    for k in run:
        pos += 1 + len(k)
        ends.append(pos)
    return b",".join(run), ends


@pytest.mark.parametrize("seed", range(4))
def test_lines_kept_by_the_interner_join_as_from_scratch(seed: int) -> None:
    """The interner's lines grow their joined bytes from the line they continue (one buffer,
    in place) across a main agent and a subagent of one session, retries, edits deep in the
    history and rounds parsed whole (spaced): each equals its own serializations joined."""
    from tracetap.ingest.reuse import Interner
    from tracetap.model import Round

    rng = random.Random(seed)
    main, sub = _session(rng, 30), _session(random.Random(seed + 100), 30)
    tools = [dict(t, description=f"{t['name']} does this. " * 60) for t in main[0]["tools"]]
    main = [dict(b, tools=tools) for b in main]  # big enough to be cut out of the subagent's
    extra = {"name": "Extra", "input_schema": {"type": "object"}}
    # the subagent has one more tool; later the main agent gains another (both grow the tools
    # the main agent's line joined: only the first may grow its buffer in place)
    sub = [
        dict(
            b,
            messages=[{"role": "user", "content": "subagent task"}, *b["messages"]],
            tools=main[0]["tools"] + [extra],
        )
        for b in sub
    ]
    main = [
        dict(b, tools=b["tools"] + [dict(extra, name="Later")]) if i >= 15 else b
        for i, b in enumerate(main)
    ]
    interner = Interner()
    order = [(main, i) for i in range(30)] + [(sub, i) for i in range(30)]
    rng.shuffle(order)
    order.sort(key=lambda t: t[1])  # each conversation in order, the two interleaved
    grown, buffers = 0, []  # buffers: of lines seen before
    for bodies, i in order:
        body = bodies[i]
        for attempt in range(2 if rng.random() < 0.2 else 1):  # a retry re-sends the body
            raw = json.dumps(body).encode() if rng.random() < 0.15 else _compact(body)
            lines = interner.lines_for("hdr")
            value, _ = parse_resent(raw, PARTS, lines)
            assert _exact(value) == _exact(orjson.loads(raw))
            for line in lines:
                for part in PARTS.values():
                    # keys taken from an earlier line (after the billing line, too) are exact
                    assert line.keys[part] == [orjson.dumps(o) for o in line.objs[part]]
                    buf, size, ends = line.joined(part)
                    assert (bytes(buf[:size]), ends) == _fresh_join(line, part)
                    grown += any(buf is b and size > n for b, n in buffers)
                    buffers.append((buf, size))
            rnd = Round(
                uid=f"{i}-{attempt}",
                provider="claude",
                api="anthropic_messages",
                transport="sse",
                endpoint="/v1/messages",
                request_at=float(i),
                agent_session_id="s",
                system=value["system"],
                tools=value["tools"],
                messages=value["messages"],
            )
            interner(rnd, "hdr")
    assert grown > 20  # lines grew the buffer of the line they continue


def test_two_lines_continuing_one_never_share_what_they_add() -> None:
    """The first line to continue another grows its buffer in place; a second one (a retry
    with other input, a subagent) joins afresh, as does one while a view holds the buffer."""
    elems = [{"role": "user", "content": f"m{i} " * 50} for i in range(6)]
    keys = [orjson.dumps(e) for e in elems]

    def line(idx: list[int], origin: splice.Line | None = None, n: int = 0) -> splice.Line:
        return splice.Line(
            {"messages": [keys[i] for i in idx]},
            {"messages": [elems[i] for i in idx]},
            {"messages": (origin, n)} if origin is not None else None,
        )

    base = line([0, 1, 2])
    buf0 = base.joined("messages")[0]
    first, second = line([0, 1, 2, 3], base, 3), line([0, 1, 2, 4, 5], base, 3)
    shorter = line([0, 1, 5], base, 2)  # shares only part of the base's run
    for ln in (first, second, shorter, base):
        buf, size, ends = ln.joined("messages")
        assert (bytes(buf[:size]), ends) == _fresh_join(ln, "messages")
    assert first.joined("messages")[0] is buf0 and second.joined("messages")[0] is not buf0
    held = line([0, 1, 2, 3], second, 3)
    held.joined("messages")
    nxt = line([0, 1, 2, 3, 4], held, 4)
    with memoryview(held.joined("messages")[0]):  # exported: it cannot grow
        buf, size, ends = nxt.joined("messages")
    assert (bytes(buf[:size]), ends) == _fresh_join(nxt, "messages")


def test_after_a_changed_first_element_only_whole_elements_of_that_array_are_taken() -> None:
    """The elements after a first one that differs are looked for right after the body's first
    ","; where that is inside the first element, or further on than the second place, the
    body is parsed whole."""
    prompt = {"type": "text", "text": "You are. " * 600}
    later = {"type": "text", "text": "Then. " * 10}
    lines = [_line({"system": [{"type": "text", "text": "billing 0"}, prompt, later]})]
    key = orjson.dumps(prompt).decode()
    cases = {
        "billing line changed": [{"type": "text", "text": "billing 1"}, prompt, later],
        "inside the first": [{"type": "text", "text": "b", "copy": [1, prompt]}, prompt],
        "in the first's text": [{"type": "text", "text": "," + key}, prompt, later],
        "third place": [{"type": "text", "text": "b"}, {"type": "text", "text": "c"}, prompt],
        "only starts alike": [
            {"type": "text", "text": "b"},
            dict(prompt, text=prompt["text"] + "!"),
        ],
        "first only": [{"type": "text", "text": "billing 2"}],
        "nested system": [{"type": "text", "text": "b", "system": [{"x": 1}, prompt]}],
    }
    for name, system in cases.items():
        body = {"model": "m", "system": system, "messages": [{"role": "user", "content": "hi"}]}
        value, skipped = parse_resent(_compact(body), PARTS, lines)
        assert _exact(value) == _exact(body), name
        taken = [e for e in value["system"] if any(e is o for o in lines[0].objs["system"])]
        if name == "billing line changed":
            assert skipped > MIN_BODY and taken == [prompt, later]
            assert taken[0] is lines[0].objs["system"][1]
        else:
            assert not taken, name
