"""Storage growth: an 80-round agent session that re-sends its growing history every request.

Compares bytes in the store with the sum of raw request bodies and with the unique content.
Run: python bench/storage_growth.py [--rounds 80]; writes bench/results/storage_growth.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import string
import tempfile
import time
from pathlib import Path

from tracetap.content import canonical
from tracetap.ingest.pipeline import Pipeline
from tracetap.model import Exchange, StreamEvent
from tracetap.storage.db import ensure_schema, make_engine

RESULTS = Path(__file__).resolve().parent / "results"
WORDS = [
    "def",
    "return",
    "self",
    "import",
    "for",
    "in",
    "if",
    "else",
    "None",
    "value",
    "result",
    "config",
    "path",
    "data",
    "error",
    "print",
    "class",
    "test",
    "assert",
]


def code_like(rng: random.Random, chars: int) -> str:
    lines, n = [], 0
    while n < chars:
        ident = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10)))
        line = (
            "    " * rng.randint(0, 3)
            + " ".join(rng.choices(WORDS, k=rng.randint(2, 8)))
            + f" {ident}({rng.randint(0, 999)})"
        )
        lines.append(line)
        n += len(line) + 1
    return "\n".join(lines)


def session(n: int, seed: int = 0) -> list[tuple[dict, list[tuple[str, dict]]]]:
    rng = random.Random(seed)
    system = [
        {"type": "text", "text": "x-anthropic-billing-header: cch=0;"},
        {"type": "text", "text": code_like(rng, 12000)},
    ]
    tools = [
        {
            "name": f"Tool{i}",
            "description": code_like(rng, 1500),
            "input_schema": {"type": "object"},
        }
        for i in range(12)
    ]
    messages: list[dict] = [{"role": "user", "content": "Please fix the failing tests."}]
    out = []
    for i in range(n):
        system[0] = {
            "type": "text",
            "text": f"x-anthropic-billing-header: cch={rng.randint(0, 99999)};",
        }
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 32000,
            "stream": True,
            "metadata": {"user_id": json.dumps({"session_id": "bench-session"})},
            "system": [dict(b) for b in system],
            "tools": tools,
            "messages": list(messages),
        }
        call = f"toolu_{i:04d}"
        text = code_like(rng, 300)
        args = {"command": f"pytest tests/test_{i}.py -x"}
        events = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": f"msg_{i:04d}",
                        "model": "claude-sonnet-4-5",
                        "usage": {
                            "input_tokens": 5,
                            "cache_read_input_tokens": 1000 * i,
                            "cache_creation_input_tokens": 700,
                            "output_tokens": 1,
                        },
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {"type": "tool_use", "id": call, "name": "Bash", "input": {}},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": json.dumps(args)},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 1}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 120},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        out.append((body, events))
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "tool_use", "id": call, "name": "Bash", "input": args},
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call,
                        "content": code_like(rng, rng.randint(800, 4000)),
                    }
                ],
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=80)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tt-growth-"))
    db = tmp / "store.db"
    engine = make_engine(f"sqlite:///{db}")
    ensure_schema(engine)
    with sqlite3.connect(db) as c:
        empty = (
            c.execute("pragma page_count").fetchone()[0]
            * c.execute("pragma page_size").fetchone()[0]
        )
    pipeline = Pipeline(engine, tmp / "journal")
    pipeline.start()
    raw_total, unique = 0, {}
    t = time.time()
    for i, (body, events) in enumerate(session(args.rounds)):
        raw = json.dumps(body).encode()
        raw_total += len(raw)
        for part in [*body["system"], body["tools"], *body["messages"]]:
            data = canonical(part)
            unique[data] = len(data)
        evs = [
            StreamEvent(t + i * 10 + 1 + k * 0.01, n, json.dumps(d))
            for k, (n, d) in enumerate(events)
        ]
        pipeline.submit(
            Exchange(
                uid=f"growth-{i}",
                api="anthropic_messages",
                transport="sse",
                method="POST",
                scheme="https",
                host="api.anthropic.com",
                path="/v1/messages",
                request_headers=[("x-claude-code-session-id", "bench-session")],
                request_body=raw,
                request_at=t + i * 10,
                status=200,
                end_at=t + i * 10 + 2,
                events=evs,
            )
        )
    pipeline.stop()
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.execute("VACUUM")
        size = (
            c.execute("pragma page_count").fetchone()[0]
            * c.execute("pragma page_size").fetchone()[0]
        )
        blobs = c.execute("select sum(length(data)) from blobs").fetchone()[0]
        tokens_in_last = c.execute("select max(input_tokens_total) from rounds").fetchone()[0]
    unique_bytes = sum(unique.values())
    last_body_bytes = len(json.dumps(session(args.rounds)[-1][0]))
    result = {
        "rounds": args.rounds,
        "raw_request_bytes": raw_total,
        "unique_content_bytes": unique_bytes,
        "store_bytes": size - empty,
        "blob_bytes": blobs,
        "last_request_bytes": last_body_bytes,
        "approx_last_prompt_tokens": last_body_bytes // 4,
        "store_over_unique": (size - empty) / unique_bytes,
        "store_over_raw": (size - empty) / raw_total,
        "reported_last_input_tokens": tokens_in_last,
    }
    print(
        f"rounds {args.rounds}; last request {last_body_bytes / 1e3:.0f} kB "
        f"(~{last_body_bytes // 4:,} tokens)"
    )
    print(f"raw request bodies  {raw_total / 1e6:8.2f} MB")
    print(f"unique content      {unique_bytes / 1e6:8.2f} MB")
    print(
        f"store (SQLite)      {(size - empty) / 1e6:8.2f} MB   "
        f"= {result['store_over_unique']:.2f}x unique, {result['store_over_raw']:.3f}x raw"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "storage_growth.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
