"""Ingest rate: rounds/s the background writer sustains, and its queue under a steady load.

Run: python bench/ingest_rate.py [--db URL] [--workers N] [--rounds N] [--repeat N] [--pre-framed]
[--steady-rate 200 --steady-seconds 20]. Writes bench/results/ingest_rate_<db>_w<N>.json.
Transforms (scrubbing, tokenization) are what `tracetap.ingest.steps.build_transforms()`
enables, i.e. what `tracetap proxy` runs; `--workers` runs them in worker processes as
`--ingest-workers` does.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_overhead import cpu_seconds  # noqa: E402
from storage_growth import session  # noqa: E402  (bench scripts share generators)

from tracetap.allocator import collect_less, keep_freed_memory  # noqa: E402
from tracetap.ingest.pipeline import Pipeline  # noqa: E402
from tracetap.model import Exchange, StreamEvent  # noqa: E402
from tracetap.storage.db import ensure_schema, make_engine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


CLAUDE_CODE_ORDER = (
    "model",
    "messages",
    "system",
    "tools",
    "metadata",
    "max_tokens",
    "thinking",
    "stream",
)  # tests/e2e/WIRE_NOTES.md


def wire_json(body: dict, *, spaced: bool = False) -> bytes:
    """A request body as Claude Code sends it: its fields in its order (the history before the
    system prompt, whose billing line changes every request), compact, UTF-8 (JavaScript's
    JSON.stringify); `spaced`: the generator's order written by Python's json.dumps with its
    defaults (no agent sends that form)."""
    if spaced:
        return json.dumps(body).encode()
    ordered = {k: body[k] for k in CLAUDE_CODE_ORDER if k in body}
    ordered.update((k, v) for k, v in body.items() if k not in ordered)
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()


# What Claude Code sends with every request, and what the API answers with (WIRE_NOTES.md).
REQUEST_HEADERS = [
    ("Accept", "application/json"),
    ("Content-Type", "application/json"),
    ("User-Agent", "claude-cli/2.1.328 (external, sdk-cli)"),
    ("X-Stainless-Arch", "x64"),
    ("X-Stainless-Lang", "js"),
    ("X-Stainless-OS", "Linux"),
    ("X-Stainless-Package-Version", "0.128.0"),
    ("X-Stainless-Runtime", "node"),
    ("X-Stainless-Runtime-Version", "v26.12.1"),
    ("X-Stainless-Retry-Count", "0"),
    ("X-Stainless-Timeout", "600"),
    (
        "anthropic-beta",
        (
            "claude-code-20250219,interleaved-thinking-2025-05-14,"
            "context-management-2025-06-27,fine-grained-tool-streaming-2025-05-14"
        ),
    ),
    ("anthropic-dangerous-direct-browser-access", "true"),
    ("anthropic-version", "2023-06-01"),
    ("x-api-key", "sk-ant-api03-bench-not-a-key"),
    ("x-app", "cli"),
    ("Connection", "keep-alive"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
]
RESPONSE_HEADERS = [
    ("date", "Tue, 01 Dec 2026 12:00:00 GMT"),
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("request-id", "req_011CBench"),
    ("anthropic-organization-id", "00000000-bench"),
    ("via", "1.1 google"),
    ("server", "cloudflare"),
]


def streamed(events: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The events as the API streams them: a `ping` after the first block starts, text one
    word a delta, tool input as an empty delta then three pieces (WIRE_NOTES.md)."""
    out: list[tuple[str, dict]] = []
    for name, data in events:
        delta = data.get("delta", {}) if name == "content_block_delta" else {}
        if delta.get("type") == "text_delta":
            words = re.findall(r"\s*\S+\s*", delta["text"]) or [delta["text"]]
            out += [(name, dict(data, delta={"type": "text_delta", "text": w})) for w in words]
        elif delta.get("type") == "input_json_delta":
            js = delta["partial_json"]
            cuts = [0, 0, len(js) // 3, 2 * len(js) // 3, len(js)]
            out += [
                (name, dict(data, delta={"type": "input_json_delta", "partial_json": js[a:b]}))
                for a, b in itertools.pairwise(cuts)
            ]
        else:
            out.append((name, data))
        if name == "content_block_start" and data.get("index") == 0:
            out.append(("ping", {"type": "ping"}))
    return out


def exchanges(
    n: int,
    sessions: int = 20,
    *,
    seed: int = 0,
    prefix: str = "",
    same_content: bool = False,
    interleave: bool = True,
    spaced: bool = False,
    pre_framed: bool = False,
) -> list[Exchange]:
    """`sessions` concurrent agent sessions of n/sessions rounds each, their rounds interleaved
    in time (round i of every session, then round i+1), every one with its own content (no
    session's new text was seen in another: tokenizer and scrubber caches help as in real use).
    Each exchange is what the proxy captures: Claude Code's request headers, the API's
    response headers, and the response as the raw SSE chunks that arrived, one per event
    (text a word at a time), framed off the proxy's hot path as in real use.
    `same_content`: every session re-sends one template (new text then hits the caches
    filled by the session before);
    `interleave=False`: one session after the other;
    `spaced`: bodies as Python's json.dumps writes them (see `wire_json`);
    `pre_framed`: one session header, no response headers, the response as nine events
    framed already (skips the framing and the headers' work a captured round costs)."""
    per = max(1, n // sessions)
    by_session: list[list[Exchange]] = []
    t = time.time()
    for s in range(sessions):
        out: list[Exchange] = []
        by_session.append(out)
        content = session(per, seed=0 if same_content else seed * 1000 + s)
        for i, (body, events) in enumerate(content):
            sid = f"{prefix}s{seed}-{s}"
            body = dict(body, metadata={"user_id": json.dumps({"session_id": sid})})
            session_header = ("X-Claude-Code-Session-Id", sid)  # as Claude Code sends it
            ex = Exchange(
                uid=f"{prefix}ingest-{seed}-{s}-{i}-{time.time_ns()}",
                api="anthropic_messages",
                transport="sse",
                method="POST",
                scheme="https",
                host="api.anthropic.com",
                path="/v1/messages",
                request_headers=[session_header],
                request_body=wire_json(body, spaced=spaced),
                request_at=t + i,
                status=200,
                end_at=t + i + 1,
            )
            if pre_framed:
                ex.events = [
                    StreamEvent(t + i + k * 0.01, name, json.dumps(d))
                    for k, (name, d) in enumerate(events)
                ]
            else:
                ex.request_headers = [*REQUEST_HEADERS[:3], session_header, *REQUEST_HEADERS[3:]]
                ex.response_headers = list(RESPONSE_HEADERS)
                ex.upstream_first_byte_at = t + i + 0.3
                ex.wire_chunks = [
                    (
                        t + i + 0.3 + k * 0.02,
                        f"event: {name}\ndata: {json.dumps(d, separators=(',', ':'))}\n\n".encode(),
                    )
                    for k, (name, d) in enumerate(streamed(events))
                ]
                ex.response_bytes = sum(len(c) for _, c in ex.wire_chunks)
            out.append(ex)
    if not interleave:
        return [ex for rounds in by_session for ex in rounds][:n]
    return [ex for rounds in zip(*by_session) for ex in rounds][:n]


def transforms_and_extensions() -> tuple[list, list]:
    try:
        from tracetap.ingest.steps import build_transforms
    except ImportError:
        return [], []
    return build_transforms()


def worker_steps() -> object:
    """What each ingest worker builds: the same steps `tracetap proxy` runs."""
    from tracetap.ingest.steps import build_steps

    return functools.partial(build_steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--steady-rate", type=float, default=200)
    ap.add_argument("--steady-seconds", type=float, default=20)
    ap.add_argument(
        "--one-session-at-a-time",
        action="store_true",
        help="rounds ordered session after session, not interleaved (the figures "
        "before 2026-12-01)",
    )
    ap.add_argument(
        "--spaced-json",
        action="store_true",
        help="request bodies as Python's json.dumps writes them, with spaces (no "
        "agent sends that; the figures before 2026-12-01)",
    )
    ap.add_argument(
        "--pre-framed",
        action="store_true",
        help="exchanges without the headers agents and the API send, their "
        "responses as nine events framed already (the figures before "
        "2026-12-02)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="ingest worker processes (`tracetap proxy --ingest-workers`)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="bursts to run, each of new sessions; the figure is their median (the "
        "host's speed drifts by 20-30 %% over minutes)",
    )
    ap.add_argument(
        "--same-content",
        action="store_true",
        help="every session re-sends one template (new text is cached across "
        "sessions; how the figures before 2026-11-25 were measured)",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tt-ingest-"))
    url = args.db or f"sqlite:///{tmp / 'store.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    transforms, extensions = transforms_and_extensions()
    interleave = not args.one_session_at_a_time
    # every burst and the steady phase: the same shape of work, each of its own sessions
    workload = functools.partial(
        exchanges,
        same_content=args.same_content,
        interleave=interleave,
        spaced=args.spaced_json,
        pre_framed=args.pre_framed,
    )
    items = workload(args.rounds)
    p = Pipeline(
        engine,
        tmp / "journal",
        transforms=transforms,
        extensions=extensions,
        workers=args.workers,
        worker_steps=worker_steps() if args.workers > 1 else None,
    )
    p.start()
    keep_freed_memory()  # as the ingest process of `tracetap proxy` does (ingest/worker.py)
    collect_less()
    bursts: list[tuple[float, list[float]]] = []
    for k in range(max(1, args.repeat)):
        if k:  # new sessions (seed 1 is the steady phase's)
            items = workload(args.rounds, seed=10 + k)
        done = p.stats.rounds_recorded
        cpu0 = cpu_seconds(os.getpid())
        t0 = time.perf_counter()
        for ex in items:
            p.submit(ex)
        while p.queue_depth or p.stats.rounds_recorded - done < len(items):
            time.sleep(0.01)
            if time.perf_counter() - t0 > 600:
                break
        rate = (p.stats.rounds_recorded - done) / (time.perf_counter() - t0)
        cpu1 = cpu_seconds(os.getpid())
        # CPU per round over the burst: this process (the pipeline) and its workers
        bursts.append((rate, [(b - a) * 1000 / max(1, len(items)) for a, b in zip(cpu0, cpu1)]))
        if args.repeat > 1:
            print(
                f"burst {k + 1}: {rate:,.0f} rounds/s, CPU per round {sum(bursts[-1][1]):.2f} ms",
                flush=True,
            )
    burst, cpu_ms = sorted(bursts)[len(bursts) // 2]  # the median burst (upper, when even)
    # Steady load: submit at a fixed rate and watch the queue.
    steady = workload(int(args.steady_rate * args.steady_seconds), seed=1)
    depths: list[int] = []
    start = time.perf_counter()
    for i, ex in enumerate(steady):
        deadline = start + i / args.steady_rate
        while time.perf_counter() < deadline:
            time.sleep(max(0.0, min(0.005, deadline - time.perf_counter())))
        p.submit(ex)
        if i % 20 == 0:
            depths.append(p.queue_depth)
    stopping = time.perf_counter()
    p.stop()  # writes what is queued first
    drain = time.perf_counter() - stopping
    # A queue that keeps up peaks alike in every quarter; one that falls behind grows.
    q = max(1, len(depths) // 4)
    quarters = [max(depths[i : i + q]) for i in range(0, q * 4, q)]
    result = {
        "db": engine.url.get_backend_name(),
        "rounds": len(items),
        "burst_rounds_per_s": burst,
        "steady_rate": args.steady_rate,
        "steady_queue_max": max(depths),
        "steady_queue_last": depths[-1],
        "steady_queue_max_by_quarter": quarters,
        "steady_drain_s": drain,
        "same_content": args.same_content,
        "workers": args.workers,
        "interleaved": interleave,
        "spaced_json": args.spaced_json,
        "pre_framed": args.pre_framed,
        "burst_cpu_ms_per_round": {"pipeline": cpu_ms[0], "workers": cpu_ms[1]},
        "bursts": [
            {"rounds_per_s": r, "cpu_ms_per_round": {"pipeline": c[0], "workers": c[1]}}
            for r, c in bursts
        ],
        "transforms": [type(t).__name__ for t in transforms],
    }
    order = "sessions interleaved" if interleave else "one session at a time"
    spread = (
        f" (median of {len(bursts)}: {min(r for r, _ in bursts):,.0f}-"
        f"{max(r for r, _ in bursts):,.0f})"
        if len(bursts) > 1
        else ""
    )
    print(
        f"{result['db']}, {args.workers} worker(s), {order}: burst {burst:,.0f} rounds/s"
        f"{spread} over {len(items)} rounds (CPU per round {sum(cpu_ms):.2f} ms: pipeline "
        f"{cpu_ms[0]:.2f} + workers {cpu_ms[1]:.2f}); steady "
        f"{args.steady_rate:.0f}/s for {args.steady_seconds:.0f}s -> queue max "
        f"{max(depths)} (by quarter {'/'.join(map(str, quarters))}), last {depths[-1]}, "
        f"written {drain:.1f} s after the last; "
        f"transforms: {result['transforms'] or 'none'}"
    )
    RESULTS.mkdir(exist_ok=True)
    (
        RESULTS / f"ingest_rate_{result['db']}_w{args.workers}"
        f"{'' if interleave else '_serial'}.json"
    ).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
