"""Replays a plan against an OpenAI-compatible server and measures every round.

Closed loop (default): each session sends round i, waits for the whole response, waits the
recorded gap (scaled), then sends round i+1. Open loop: every round at its recorded time. Every
wait is to an absolute deadline on the monotonic clock (pacing.Pacer, never accumulated sleeps);
a request is started inside the timer's callback, and due ones also between chunks of responses
being read. Lateness = when the request is handed to the HTTP client minus its deadline. The
next round's body is built while the current one is in flight (large prompts in a worker
thread). A session that waits for a --max-active-sessions slot starts late, and its first
round's lateness says by how much.

The ids the server generated for a round (`token_ids`, vLLM's `return_token_ids`; else its text
re-tokenized) go back to the prompt builder, so the next round's prompt continues with what the
server generated and hits the blocks it cached for it; such a next body is built once the
response is in. Before the replay starts, each agent's shared system/tools prefix is sent once
(`warm_shared`), as the recording's cache already held it when its sessions began.
"""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import numpy as np
import orjson
from yarl import URL

from tracetap.replay.pacing import Pacer, loop_factory, now, steady_gc
from tracetap.replay.plan import Plan, PlanRound, PlanSession
from tracetap.replay.prompts import (
    BuiltPrompt,
    PromptBuilder,
    Tokenizer,
    request_body,
    words_to_ids,
)
from tracetap.replay.watch import Status, Watch

__all__ = [
    "ReplayConfig",
    "ReplayError",
    "RoundResult",
    "preflight",
    "reachable",
    "replay",
    "run_replay",
    "summarize",
]

_BIG_PROMPT = 8192  # tokens; bigger bodies are built in a worker thread
_LEAD = 0.05  # seconds before a first/open-loop deadline at which its body is built


class ReplayError(Exception):
    """The replay cannot start (server unreachable, bad configuration)."""


@dataclass(slots=True)
class ReplayConfig:
    """How to replay: target, loop mode and time scaling (all times in seconds)."""

    base_url: str
    model: str
    endpoint: str = "completions"
    open_loop: bool = False
    speedup: float = 1.0
    tool_wait_scale: float = 1.0
    human_wait_scale: float = 1.0
    max_wait: float | None = None
    max_active_sessions: int = 0
    request_timeout: float = 600.0
    max_errors: int = 100
    ignore_eos: bool = True
    api_key: str | None = None
    slo_ttft: float | None = None
    slo_tpot: float | None = None
    start_delay: float = 0.2
    warm_shared: bool = True

    def wait_after(self, rnd: PlanRound) -> float:
        wait = rnd.tool_wait * self.tool_wait_scale + rnd.human_wait * self.human_wait_scale
        if self.max_wait is not None:
            wait = min(wait, self.max_wait)
        return wait / self.speedup


@dataclass(slots=True)
class RoundResult:
    """What was measured for one round (times in seconds from the replay start; *_ms in ms)."""

    session_id: str
    round_index: int
    scheduled: float
    sent: float | None = None
    lateness_ms: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    e2e_ms: float | None = None
    prompt_tokens: int = 0
    planned_prefix: int = 0
    reusable_prefix: int = 0
    planned_output: int = 0
    output_tokens: int | None = None
    server_prompt_tokens: int | None = None
    server_cached_tokens: int | None = None
    status: int | None = None
    error: str | None = None


class _Run:
    def __init__(
        self,
        plan: Plan,
        cfg: ReplayConfig,
        builder: PromptBuilder,
        tokenizer: Tokenizer | None,
        sink: IO[str] | None,
        on_result: Callable[[RoundResult], None] | None,
        on_status: Callable[[Status], None] | None = None,
    ) -> None:
        self.plan, self.cfg, self.builder, self.tokenizer = plan, cfg, builder, tokenizer
        self.sink, self.on_result, self.on_status = sink, on_result, on_status
        waits = [[cfg.wait_after(r) for r in s.rounds] for s in plan.sessions]
        self.watch = Watch(plan, cfg.speedup, waits, cfg.open_loop)
        self.lines: list[bytes] = []
        self.errors = 0
        self.aborted: str | None = None
        self.stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.pacer = Pacer(self.loop)
        self.t0 = 0.0
        self.warm = {"requests": 0, "prompt_tokens": 0, "errors": 0}
        path = "/chat/completions" if cfg.endpoint == "chat" else "/completions"
        self.url = URL(cfg.base_url.rstrip("/") + path)  # parsed once, not per request
        self.headers = {"Content-Type": "application/json"}
        if cfg.api_key:
            self.headers["Authorization"] = f"Bearer {cfg.api_key}"

    async def sleep_until(self, deadline: float) -> None:
        """Sleep to an absolute deadline on the monotonic clock (never accumulated sleeps)."""
        await self.pacer.sleep_until(deadline)

    async def build(
        self, session_id: str, rnd: PlanRound, group: str | None = None
    ) -> tuple[BuiltPrompt, bytes]:
        def work() -> tuple[BuiltPrompt, bytes]:
            prompt = self.builder.build(session_id, rnd, group)
            body = request_body(
                prompt,
                model=self.cfg.model,
                endpoint=self.cfg.endpoint,
                max_tokens=rnd.output_len,
                ignore_eos=self.cfg.ignore_eos,
                tokenizer=self.tokenizer,
            )
            return prompt, body

        if rnd.input_len > _BIG_PROMPT or self.tokenizer is not None:
            return await asyncio.to_thread(work)
        return work()

    def record(self, result: RoundResult) -> None:
        # Kept as its JSON line: bytes are not tracked by the collector, so a long run's results
        # do not make collections more frequent or longer (pauses that would delay sends).
        line = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
        self.lines.append(line)
        self.watch.finished(result.session_id, result.e2e_ms, result.error is not None)
        if result.error is not None:
            self.errors += 1
            if self.errors >= self.cfg.max_errors and self.aborted is None:
                self.aborted = f"stopped after {self.errors} failed requests (last: {result.error})"
                self.stop.set()
        if self.sink is not None:
            self.sink.write(line.decode() + "\n")
            self.sink.flush()
        if self.on_result is not None:
            self.on_result(result)

    def send_at(
        self,
        http: aiohttp.ClientSession,
        session_id: str,
        rnd: PlanRound,
        prompt: BuiltPrompt,
        body: bytes,
        deadline: float,
    ) -> asyncio.Future[RoundResult]:
        """Start send() at `deadline`, inside the pacer's timer callback: the request is written
        to its connection before the loop turns to other work (responses being read)."""
        return self.pacer.start_at(
            deadline, functools.partial(self.send, http, session_id, rnd, prompt, body, deadline)
        )

    async def send(
        self,
        http: aiohttp.ClientSession,
        session_id: str,
        rnd: PlanRound,
        prompt: BuiltPrompt,
        body: bytes,
        deadline: float,
    ) -> RoundResult:
        """Send now (lateness: how long after `deadline`) and read the stream; never raises for
        server trouble."""
        sent = now()
        self.watch.sent(session_id)
        res = RoundResult(
            session_id,
            rnd.index,
            deadline - self.t0,
            prompt_tokens=len(prompt.tokens),
            planned_prefix=prompt.planned_prefix,
            reusable_prefix=prompt.reusable,
            planned_output=rnd.output_len,
        )
        res.sent, res.lateness_ms = sent - self.t0, (sent - deadline) * 1000.0
        ids: list[int] = []
        texts: list[str] = []
        try:
            async with asyncio.timeout(self.cfg.request_timeout):
                await self._stream(http, body, sent, res, ids, texts)
            if res.error is None:
                self.builder.observe_output(session_id, rnd.index, self._output(ids, texts))
        except TimeoutError:
            res.error = f"timeout after {self.cfg.request_timeout:g} s"
        except aiohttp.ClientConnectorError as exc:
            res.error = f"connection failed: {exc.os_error or exc}"
        except (aiohttp.ClientError, ValueError) as exc:
            res.error = f"{type(exc).__name__}: {exc}"
        res.e2e_ms = (now() - sent) * 1000.0
        self.record(res)
        return res

    def _output(self, ids: list[int], texts: list[str]) -> list[int] | None:
        """The generated ids: as the server listed them, else its text tokenized (`w<id>`
        words without a tokenizer); None when they cannot be known (the builder then keeps
        its synthetic output, which the server has not cached)."""
        if ids:
            return ids
        text = "".join(texts)
        if not text:
            return None
        if self.tokenizer is not None:
            # Only if the tokenizer gives the text back: otherwise the ids are not the server's.
            enc = self.tokenizer.encode(text)
            back = self.tokenizer.decode(np.asarray(enc, dtype=np.int64))
            return enc if back.split() == text.split() else None
        words = text.split()
        if not all(w.startswith("w") and w[1:].isdigit() for w in words):
            return None
        return words_to_ids(text)

    async def _stream(
        self,
        http: aiohttp.ClientSession,
        body: bytes,
        sent: float,
        res: RoundResult,
        ids: list[int],
        texts: list[str],
    ) -> None:
        async with http.post(self.url, data=body, headers=self.headers) as resp:
            res.status = resp.status
            if resp.status != 200:
                text = (await resp.text())[:300].strip()
                res.error = f"HTTP {resp.status}: {text}"
                return
            last: float | None = None
            n = 0
            buf = b""
            done = False
            # Whole reads, split into SSE events here: one await per network read.
            async for data in resp.content.iter_any():
                t = now()
                self.pacer.poll()
                buf += data.replace(b"\r\n", b"\n") if b"\r" in data else data
                *events, buf = buf.split(b"\n\n")
                for event in events:
                    line = event.strip()
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        break
                    chunk = orjson.loads(payload)
                    if "error" in chunk:
                        res.error = f"stream error: {chunk['error']}"
                        return
                    for choice in chunk.get("choices") or ():
                        piece = choice.get("text")
                        if piece is None:
                            piece = (choice.get("delta") or {}).get("content")
                        got = choice.get("token_ids")
                        if got:
                            ids.extend(got)
                        if piece:
                            texts.append(piece)
                            n += 1
                            if last is None:
                                res.ttft_ms = (t - sent) * 1000.0
                            else:
                                res.itl_ms.append((t - last) * 1000.0)
                            last = t
                    usage = chunk.get("usage")
                    if usage:
                        res.output_tokens = usage.get("completion_tokens")
                        res.server_prompt_tokens = usage.get("prompt_tokens")
                        details = usage.get("prompt_tokens_details") or {}
                        res.server_cached_tokens = details.get("cached_tokens")
                if done:
                    break
            if res.output_tokens is None:
                res.output_tokens = n
            if res.itl_ms:
                res.tpot_ms = sum(res.itl_ms) / len(res.itl_ms)  # np.mean would build an array

    async def closed_session(
        self, http: aiohttp.ClientSession, session: PlanSession, gate: asyncio.Semaphore | None
    ) -> None:
        deadline = self.t0 + session.start / self.cfg.speedup
        await self.sleep_until(deadline - _LEAD)  # build the first body before its deadline
        if gate is not None:
            await gate.acquire()
        sid, group = session.session_id, session.group
        try:
            nxt: asyncio.Future[tuple[BuiltPrompt, bytes]] | None = asyncio.ensure_future(
                self.build(sid, session.rounds[0], group)
            )
            for i, rnd in enumerate(session.rounds):
                assert nxt is not None  # built ahead, or after the previous response
                prompt, body = await nxt
                if self.stop.is_set():
                    return
                self.watch.scheduled(sid, i, deadline)
                task = self.send_at(http, sid, rnd, prompt, body, deadline)
                following = session.rounds[i + 1] if i + 1 < len(session.rounds) else None
                # Built while this one is in flight unless its prefix reaches into this round's
                # output, whose ids are only known once the response is in.
                nxt = None
                if following is not None and following.prefix_len <= len(prompt.tokens):
                    nxt = asyncio.ensure_future(self.build(sid, following, group))
                res = await task
                assert res.sent is not None and res.e2e_ms is not None  # send() sets both
                # The gap runs from the end of the response, not from when this resumes.
                deadline = self.t0 + res.sent + res.e2e_ms / 1000.0 + self.cfg.wait_after(rnd)
                if following is not None and nxt is None:
                    nxt = asyncio.ensure_future(self.build(sid, following, group))
        finally:
            self.builder.forget(session.session_id)
            if gate is not None:
                gate.release()

    async def open_loop(self, http: aiohttp.ClientSession) -> None:
        rounds = sorted(
            ((r.at, s.session_id, s.group, r) for s in self.plan.sessions for r in s.rounds),
            key=lambda x: (x[0], x[3].index),
        )
        tasks: set[asyncio.Future[RoundResult]] = set()
        position = {s.session_id: 0 for s in self.plan.sessions}
        for at, sid, group, rnd in rounds:
            if self.stop.is_set():
                break
            deadline = self.t0 + at / self.cfg.speedup
            self.watch.scheduled(sid, position[sid], deadline)
            position[sid] += 1
            await self.sleep_until(deadline - _LEAD)
            prompt, body = await self.build(sid, rnd, group)
            task = self.send_at(http, sid, rnd, prompt, body, deadline)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def warmup(self, http: aiohttp.ClientSession) -> None:
        """Send each agent's shared prefix once, one at a time, before the replay's clock
        starts; not part of the results (summary["warmup"] counts them)."""
        for _, prompt in self.builder.warmup(self.plan):
            body = request_body(
                prompt,
                model=self.cfg.model,
                endpoint=self.cfg.endpoint,
                max_tokens=1,
                ignore_eos=self.cfg.ignore_eos,
                tokenizer=self.tokenizer,
            )
            self.warm["requests"] += 1
            self.warm["prompt_tokens"] += len(prompt.tokens)
            try:
                async with asyncio.timeout(self.cfg.request_timeout):
                    async with http.post(self.url, data=body, headers=self.headers) as resp:
                        await resp.read()
                        ok = resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            self.warm["errors"] += not ok

    async def run(self) -> None:
        try:
            with steady_gc():
                await self._run()
        finally:
            self.pacer.close()

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            read_bufsize=1 << 20,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as http:
            if self.cfg.warm_shared:
                await self.warmup(http)
            self.t0 = now() + self.cfg.start_delay
            self.watch.start(
                self.t0, {s.session_id: s.start / self.cfg.speedup for s in self.plan.sessions}
            )
            ticker = asyncio.ensure_future(self.tick()) if self.on_status else None
            work: asyncio.Future[None] | asyncio.Future[list[None]]
            if self.cfg.open_loop:
                work = asyncio.ensure_future(self.open_loop(http))
            else:
                gate = (
                    asyncio.Semaphore(self.cfg.max_active_sessions)
                    if self.cfg.max_active_sessions > 0
                    else None
                )
                work = asyncio.ensure_future(
                    asyncio.gather(
                        *(self.closed_session(http, s, gate) for s in self.plan.sessions)
                    )
                )
            stopper = asyncio.ensure_future(self.stop.wait())
            try:
                await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                if ticker is not None:
                    ticker.cancel()
                if not work.done():
                    work.cancel()
                await asyncio.gather(work, stopper, return_exceptions=True)
                if ticker is not None:
                    await asyncio.gather(ticker, return_exceptions=True)

    async def tick(self) -> None:
        """Tell `on_status` where the replay stands, twice a second."""
        assert self.on_status is not None
        while True:
            self.on_status(self.watch.status(now()))
            await asyncio.sleep(0.5)


async def run_replay(
    plan: Plan,
    cfg: ReplayConfig,
    *,
    builder: PromptBuilder | None = None,
    tokenizer: Tokenizer | None = None,
    sink: IO[str] | None = None,
    on_result: Callable[[RoundResult], None] | None = None,
    on_status: Callable[[Status], None] | None = None,
) -> tuple[list[RoundResult], dict[str, Any]]:
    """Replay `plan`; returns every round's result and the summary. Results already gathered
    are kept when the run is interrupted or stopped by errors (the summary says why).
    `on_status` is told twice a second where the run stands (watch.Status)."""
    if cfg.speedup <= 0:
        raise ReplayError("speedup must be positive")
    builder = builder or PromptBuilder(vocab_size=tokenizer.vocab_size if tokenizer else 32000)
    run = _Run(plan, cfg, builder, tokenizer, sink, on_result, on_status)
    started = time.time()
    try:
        await run.run()
    except asyncio.CancelledError:
        # Interrupted (Ctrl-C): keep what was measured; the summary says so.
        run.aborted = run.aborted or "interrupted"
    results = [RoundResult(**orjson.loads(line)) for line in run.lines]
    summary = summarize(
        results, cfg, planned=plan.n_rounds, aborted=run.aborted, wall=time.time() - started
    )
    summary["warmup"] = run.warm
    return results, summary


def replay(
    plan: Plan,
    cfg: ReplayConfig,
    out_dir: Path,
    *,
    builder: PromptBuilder | None = None,
    tokenizer: Tokenizer | None = None,
    on_result: Callable[[RoundResult], None] | None = None,
    on_status: Callable[[Status], None] | None = None,
) -> dict[str, Any]:
    """Replay `plan` on uvloop where installed, writing each round to out_dir/rounds.jsonl and
    the summary to out_dir/summary.json; returns the summary. Ctrl-C or SIGTERM stops it; what
    was measured so far is kept and summarized. `on_status`: as `run_replay`'s.

    Example: replay(load_plan("trace.jsonl"), ReplayConfig(base_url=url, model="m"), Path("out"))
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "rounds.jsonl").open("w", encoding="utf-8") as sink:

        async def main() -> dict[str, Any]:
            task = asyncio.current_task()
            loop = asyncio.get_running_loop()
            if task is not None:
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
            try:
                _, summary = await run_replay(
                    plan,
                    cfg,
                    builder=builder,
                    tokenizer=tokenizer,
                    sink=sink,
                    on_result=on_result,
                    on_status=on_status,
                )
                return summary
            finally:
                loop.remove_signal_handler(signal.SIGTERM)

        summary = asyncio.run(main(), loop_factory=loop_factory())
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _pct(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return {
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
        "n": int(arr.size),
    }


def _misses_ttft(r: RoundResult, cfg: ReplayConfig) -> bool:
    """TTFT over --slo-ttft (a missing TTFT misses it)."""
    return cfg.slo_ttft is not None and (r.ttft_ms is None or r.ttft_ms > cfg.slo_ttft * 1000)


def _misses_tpot(r: RoundResult, cfg: ReplayConfig) -> bool:
    """Mean TPOT over --slo-tpot (a round of one token has no TPOT: it cannot miss)."""
    return cfg.slo_tpot is not None and r.tpot_ms is not None and r.tpot_ms > cfg.slo_tpot * 1000


def _meets_slo(r: RoundResult, cfg: ReplayConfig) -> bool:
    """TTFT within --slo-ttft (a missing TTFT fails) and mean TPOT within --slo-tpot."""
    return not _misses_ttft(r, cfg) and not _misses_tpot(r, cfg)


def _goodput(
    results: list[RoundResult], ok: list[RoundResult], cfg: ReplayConfig, wall: float | None
) -> dict[str, Any]:
    """Requests that met every SLO given, missed one (by which), or failed; every count is
    None when no SLO was given (there is nothing to meet)."""
    given = cfg.slo_ttft is not None or cfg.slo_tpot is not None
    good = [r for r in ok if _meets_slo(r, cfg)] if given else []
    return {
        "slo_ttft_ms": cfg.slo_ttft * 1000 if cfg.slo_ttft is not None else None,
        "slo_tpot_ms": cfg.slo_tpot * 1000 if cfg.slo_tpot is not None else None,
        "requests_meeting_slo": len(good) if given else None,
        "requests_missing_slo": len(ok) - len(good) if given else None,
        "requests_missing_ttft": sum(_misses_ttft(r, cfg) for r in ok) if given else None,
        "requests_missing_tpot": sum(_misses_tpot(r, cfg) for r in ok) if given else None,
        "requests_failed": len(results) - len(ok),
        "fraction": _ratio(len(good), len(results)) if given else None,
        "per_s": _ratio(len(good), wall) if given and wall else None,
    }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def summarize(
    results: list[RoundResult],
    cfg: ReplayConfig,
    *,
    planned: int,
    aborted: str | None = None,
    wall: float | None = None,
) -> dict[str, Any]:
    """Percentiles, token-weighted planned vs server hit rates, goodput under the SLOs (when
    any is given)."""
    ok = [r for r in results if r.error is None]
    errors: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            kind = r.error.split(":")[0]
            errors[kind] = errors.get(kind, 0) + 1
    prompt = sum(r.prompt_tokens for r in ok)
    sends = sorted(r.sent for r in results if r.sent is not None)
    scheduled = sorted(r.scheduled for r in results)
    span = (sends[-1] - sends[0]) if len(sends) > 1 else 0.0
    sched_span = (scheduled[-1] - scheduled[0]) if len(scheduled) > 1 else 0.0
    reported = [r for r in ok if r.server_cached_tokens is not None]
    return {
        "rounds_planned": planned,
        "rounds_sent": len(results),
        "rounds_ok": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "aborted": aborted,
        "mode": "open-loop" if cfg.open_loop else "closed-loop",
        "wall_s": wall,
        "lateness_ms": _pct([r.lateness_ms for r in results if r.lateness_ms is not None]),
        "ttft_ms": _pct([r.ttft_ms for r in ok if r.ttft_ms is not None]),
        "tpot_ms": _pct([r.tpot_ms for r in ok if r.tpot_ms is not None]),
        "e2e_ms": _pct([r.e2e_ms for r in ok if r.e2e_ms is not None]),
        "prompt_tokens": prompt,
        "output_tokens": sum(r.output_tokens or 0 for r in ok),
        "planned_prefix_tokens": sum(r.planned_prefix for r in ok),
        "reusable_prefix_tokens": sum(r.reusable_prefix for r in ok),
        "server_cached_tokens": sum(r.server_cached_tokens or 0 for r in reported),
        "planned_hit_rate": _ratio(sum(r.planned_prefix for r in ok), prompt),
        "reusable_hit_rate": _ratio(sum(r.reusable_prefix for r in ok), prompt),
        "server_hit_rate": _ratio(
            sum(r.server_cached_tokens or 0 for r in reported),
            sum(r.prompt_tokens for r in reported),
        ),
        "server_reports_cache": bool(reported),
        "achieved_rate_per_s": _ratio(len(sends) - 1, span) if len(sends) > 1 else None,
        "scheduled_rate_per_s": (
            _ratio(len(scheduled) - 1, sched_span) if len(scheduled) > 1 else None
        ),
        "goodput": _goodput(results, ok, cfg, wall),
    }


async def reachable(cfg: ReplayConfig, timeout: float = 10.0) -> None:
    """Raise ReplayError unless a TCP connection to the server of `cfg.base_url` opens."""
    url = URL(cfg.base_url)
    if url.host is None or url.scheme not in ("http", "https"):
        raise ReplayError(f"{cfg.base_url}: not an http(s) URL — e.g. http://127.0.0.1:8000/v1")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(url.host, port)
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or "timed out"
        raise ReplayError(f"cannot reach the server at {cfg.base_url}: {reason}") from None
    writer.close()
    await writer.wait_closed()


async def preflight(
    cfg: ReplayConfig, *, tokenizer: Tokenizer | None = None, shared: int = 1024
) -> dict[str, Any]:
    """Send two requests sharing a `shared`-token prefix; report the second one's cached
    tokens and a warning when the server reports none. Raises ReplayError if unreachable."""
    builder = PromptBuilder(
        seed=int(time.time()), vocab_size=tokenizer.vocab_size if tokenizer else 32000
    )
    base = builder._fresh("preflight", shared)
    url = cfg.base_url.rstrip("/") + (
        "/chat/completions" if cfg.endpoint == "chat" else "/completions"
    )
    headers = {"Content-Type": "application/json"}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    cached: int | None = None
    timeout = aiohttp.ClientTimeout(total=min(cfg.request_timeout, 120))
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for i in range(2):
            tail = builder._fresh(f"preflight-tail-{i}", 16)
            prompt = BuiltPrompt(np.concatenate([base, tail]), 0, 0)
            body = request_body(
                prompt,
                model=cfg.model,
                endpoint=cfg.endpoint,
                max_tokens=1,
                ignore_eos=cfg.ignore_eos,
                tokenizer=tokenizer,
            )
            try:
                async with http.post(url, data=body, headers=headers) as resp:
                    if resp.status != 200:
                        text = (await resp.text())[:300].strip()
                        raise ReplayError(
                            f"preflight request to {url} failed: HTTP {resp.status}: {text}"
                        )
                    async for raw in resp.content:
                        line = raw.strip()
                        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                            usage = orjson.loads(line[5:].strip()).get("usage")
                            if usage:
                                cached = (usage.get("prompt_tokens_details") or {}).get(
                                    "cached_tokens"
                                )
            except aiohttp.ClientConnectorError as exc:
                raise ReplayError(
                    f"cannot reach the server at {cfg.base_url}: {exc.os_error or exc}"
                ) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ReplayError(
                    f"preflight request to {url} failed: {type(exc).__name__}: {exc}"
                ) from exc
    warning = None
    if not cached:
        warning = (
            f"the server reported {'no' if cached is None else 'zero'} cached prompt "
            f"tokens for two requests sharing a {shared}-token prefix: prefix caching "
            f"or usage.prompt_tokens_details is disabled, so server hit rates will read "
            f"as 0 (vLLM: --enable-prefix-caching --enable-prompt-tokens-details)"
        )
    return {"cached_tokens": cached, "shared_prefix": shared, "warning": warning}
