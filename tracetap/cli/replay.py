"""`tracetap replay` and `tracetap serve-sim`: replay recorded agent workloads against an
OpenAI-compatible server (replay.runner.replay), and a simulated one (replay.server).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.progress import Progress
from rich.text import Text

from tracetap.cli.errors import UserError
from tracetap.cli.options import open_store

if TYPE_CHECKING:
    from tracetap.replay.plan import Plan
    from tracetap.replay.prompts import PromptBuilder, Tokenizer
    from tracetap.replay.runner import ReplayConfig, RoundResult
    from tracetap.replay.watch import Status

__all__ = ["register"]

err = Console(stderr=True, soft_wrap=True)  # notes and warnings stay on one line


_SOURCES = "TraceLab JSONL(.gz), replay CSV(.gz), Mooncake JSONL, or a database URL."


def replay(
    input: Annotated[str, typer.Argument(metavar="INPUT", help=_SOURCES)],
    base_url: Annotated[
        str,
        typer.Option("--base-url", "--url", help="Server base URL, e.g. http://127.0.0.1:8000/v1."),
    ],
    model: Annotated[str, typer.Option(help="Model name sent in every request.")],
    out: Annotated[Path, typer.Option(help="Directory for rounds.jsonl and summary.json.")] = Path(
        "replay-out"
    ),
    chat: Annotated[
        bool,
        typer.Option(
            help="Text prompts via /chat/completions instead of token ids via /completions."
        ),
    ] = False,
    open_loop: Annotated[
        bool, typer.Option(help="Send every round at its recorded time, regardless of responses.")
    ] = False,
    speedup: Annotated[float, typer.Option(help="Divide all recorded times by this.")] = 1.0,
    tool_wait_scale: Annotated[float, typer.Option(help="Scale recorded tool time.")] = 1.0,
    human_wait_scale: Annotated[float, typer.Option(help="Scale recorded human time.")] = 1.0,
    max_wait: Annotated[
        float | None,
        typer.Option(help="Cap on any wait between rounds, seconds (before --speedup)."),
    ] = None,
    max_idle: Annotated[
        float | None,
        typer.Option(
            help="Shorten any stretch with no round "
            "starting to this many seconds "
            "(before --speedup)."
        ),
    ] = None,
    max_active_sessions: Annotated[int, typer.Option(help="Concurrent sessions (0: no cap).")] = 0,
    tokenizer: Annotated[
        str | None, typer.Option(help="hf:PATH/tokenizer.json of the server's model (local file).")
    ] = None,
    block_size: Annotated[int, typer.Option(help="Tokens per Mooncake hash id.")] = 512,
    slo_ttft: Annotated[
        float | None, typer.Option(help="TTFT SLO in ms: goodput counts requests within it.")
    ] = None,
    slo_tpot: Annotated[
        float | None, typer.Option(help="TPOT SLO in ms: goodput counts requests within it.")
    ] = None,
    request_timeout: Annotated[float, typer.Option(help="Per-request timeout, seconds.")] = 600.0,
    max_errors: Annotated[int, typer.Option(help="Stop after this many failed requests.")] = 100,
    ignore_eos: Annotated[
        bool, typer.Option(help="Send ignore_eos so outputs reach max_tokens.")
    ] = True,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="OPENAI_API_KEY", help="Bearer token, if the server wants one."),
    ] = None,
    preflight_check: Annotated[
        bool, typer.Option("--preflight/--no-preflight", help="Check prefix caching first.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic token ids.")] = 0,
    warm: Annotated[
        bool,
        typer.Option(
            help="First send each agent's shared system/tools prefix once, as the recording's "
            "cache held it when its sessions began."
        ),
    ] = True,
) -> None:
    """Replay recorded agent sessions against an OpenAI-compatible server and measure it.

    Prints TTFT, TPOT and end-to-end latency percentiles; goodput only under --slo-ttft or
    --slo-tpot. A terminal shows progress, and what the replay waits for when it is idle.

    Example: tracetap replay trace.jsonl --url http://127.0.0.1:8000/v1 --model m --speedup 10
    """
    from tracetap.replay.prompts import PromptBuilder, load_tokenizer
    from tracetap.replay.runner import ReplayConfig, ReplayError, preflight, reachable

    if speedup <= 0:
        raise UserError(f"--speedup {speedup:g}: must be above 0 (10 replays 10x faster)")
    plan = _load(input, block_size, max_idle)
    try:
        tok = load_tokenizer(tokenizer)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"--tokenizer {tokenizer}: {_reason(exc)}") from None
    cfg = ReplayConfig(
        base_url=base_url,
        model=model,
        endpoint="chat" if chat else "completions",
        open_loop=open_loop,
        speedup=speedup,
        tool_wait_scale=tool_wait_scale,
        human_wait_scale=human_wait_scale,
        max_wait=max_wait,
        max_active_sessions=max_active_sessions,
        request_timeout=request_timeout,
        max_errors=max_errors,
        ignore_eos=ignore_eos,
        api_key=api_key,
        warm_shared=warm,
        slo_ttft=slo_ttft / 1000 if slo_ttft is not None else None,
        slo_tpot=slo_tpot / 1000 if slo_tpot is not None else None,
    )
    try:
        asyncio.run(reachable(cfg))
        check = asyncio.run(preflight(cfg, tokenizer=tok)) if preflight_check else None
    except ReplayError as exc:
        raise UserError(f"{exc} — start the server or check --url") from None
    if check and check["warning"]:
        err.print(f"warning: {check['warning']}", highlight=False)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"--out {out}: {exc.strerror or exc} — choose a writable directory"
        ) from None
    _warn_long_waits(plan, cfg, max_idle)
    builder = PromptBuilder(seed=seed, vocab_size=tok.vocab_size if tok else 32000)
    summary = _replay_with_progress(plan, cfg, builder, tok, out)
    _print_summary(summary, out)
    if summary["aborted"] or summary["rounds_ok"] == 0 and summary["rounds_planned"]:
        raise typer.Exit(1)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}" if exc.args else "a field is missing"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load(source: str, block_size: int, max_idle: float | None) -> Plan:
    """The replay plan from INPUT; a missing, unreadable or malformed input is one line."""
    from tracetap.replay.plan import cap_idle, load_plan

    if max_idle is not None and max_idle < 0:
        raise UserError(f"--max-idle {max_idle:g}: must be 0 or more seconds")
    if "://" in source:
        open_store(source).dispose()  # a URL it cannot open, or an empty store: one line
    elif not Path(source).is_file():
        what = "a directory" if Path(source).is_dir() else "no such file"
        raise UserError(f"{source}: {what} — give a TraceLab JSONL, replay CSV or Mooncake file")
    try:
        plan = load_plan(source, block_size=block_size)
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{source}: cannot read it as a replay input ({_reason(exc)}) — give {_SOURCES}"
        ) from None
    if plan.n_rounds == 0:
        raise UserError(f"{source}: no rounds with a usable time in it — nothing to replay")
    if max_idle is not None:
        cap_idle(plan, max_idle)
    return plan


def _warn_long_waits(plan: Plan, cfg: ReplayConfig, max_idle: float | None) -> None:
    """Say before the run when the trace holds waits of more than a minute (wall time)."""
    from tracetap.replay.watch import human_seconds, idle_stretches

    idle, wait = idle_stretches(plan)  # after --max-idle, in trace seconds
    if max_idle is None and idle / cfg.speedup > 60:
        err.print(
            f"note: the trace has {human_seconds(idle)} with no session under way "
            f"({human_seconds(idle / cfg.speedup)} at --speedup {cfg.speedup:g}); "
            "--max-idle caps such stretches",
            highlight=False,
        )
    if not cfg.open_loop and cfg.max_wait is None and wait / cfg.speedup > 60:
        err.print(
            f"note: a session waits up to {human_seconds(wait)} between rounds "
            f"({human_seconds(wait / cfg.speedup)} at --speedup {cfg.speedup:g}); "
            "--max-wait caps such waits",
            highlight=False,
        )


class _ReplayProgress(Progress):
    """The progress bar, and under it what the replay is doing (or waiting for)."""

    detail = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.detail:
            yield Text(self.detail, style="dim", no_wrap=False)


def _replay_with_progress(
    plan: Plan, cfg: ReplayConfig, builder: PromptBuilder, tok: Tokenizer | None, out: Path
) -> dict[str, Any]:
    """replay.runner.replay, with a live progress display when stderr is a terminal: rounds
    done, %, rate, ETA, and what it waits for while nothing is in flight."""
    from tracetap.replay.runner import replay as run
    from tracetap.replay.watch import human_seconds

    if not err.is_terminal:  # quiet when not a terminal
        return run(plan, cfg, out, builder=builder, tokenizer=tok)
    from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn

    with _ReplayProgress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA {task.fields[eta]}"),
        console=Console(stderr=True),  # wraps the detail line (err keeps lines whole)
    ) as bar:
        task = bar.add_task("replay", total=plan.n_rounds, rate="", eta="-")
        started = time.monotonic()
        last: dict[str, float] = {"late": 0.0, "ttft": 0.0}

        def on_result(r: RoundResult) -> None:
            last["late"] = max(last["late"], r.lateness_ms or 0.0)
            last["ttft"] = r.ttft_ms or 0.0

        def on_status(st: Status) -> None:
            elapsed = time.monotonic() - started
            rate = st.done / elapsed if elapsed > 0 else 0.0
            bar.update(
                task,
                completed=st.done,
                rate=f"{rate:.2f} rounds/s",
                eta="-" if st.eta_s is None else human_seconds(st.eta_s),
            )
            if st.idle is not None and st.idle.wall_s >= 2:
                bar.detail = f"waiting: {st.idle.explain()}"
            else:
                bar.detail = (
                    f"in flight {st.in_flight}  errors {st.errors}  last TTFT "
                    f"{last['ttft']:.0f} ms  max late {last['late']:.1f} ms"
                )

        return run(
            plan, cfg, out, builder=builder, tokenizer=tok, on_result=on_result, on_status=on_status
        )


def _print_summary(s: dict[str, Any], out: Path) -> None:
    def rate(key: str) -> str:
        return "-" if s.get(key) is None else f"{s[key]:.1%}"

    wall = f" in {s['wall_s']:.1f} s" if s.get("wall_s") else ""
    typer.echo(
        f"rounds: {s['rounds_ok']} ok / {s['rounds_sent']} sent / "
        f"{s['rounds_planned']} planned ({s['mode']}){wall}"
    )
    typer.echo(f"{'latency, ms':<14}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}{'n':>8}")
    for key, name in (
        ("ttft_ms", "TTFT"),
        ("tpot_ms", "TPOT"),
        ("e2e_ms", "end to end"),
        ("lateness_ms", "send lateness"),
    ):
        v = s.get(key)
        cells = (
            "".join(f"{v[p]:>10,.1f}" for p in ("p50", "p90", "p99", "max")) + f"{v['n']:>8,}"
            if v
            else f"{'-':>10}" * 4 + f"{0:>8}"
        )
        typer.echo(f"  {name:<12}{cells}")
    typer.echo(
        f"hit rate: planned {rate('planned_hit_rate')}, reusable "
        f"{rate('reusable_hit_rate')}, server {rate('server_hit_rate')}"
    )
    w = s.get("warmup") or {}
    if w.get("requests"):
        typer.echo(
            f"warm-up: {w['requests']} shared prefixes ({w['prompt_tokens']:,} tokens) sent first"
            + (f", {w['errors']} failed" if w.get("errors") else "")
        )
    typer.echo(_goodput_line(s["goodput"], s["rounds_sent"]))
    if s["errors"]:
        typer.echo(f"errors: {s['errors']} {s['error_kinds']}", err=True)
    if s["aborted"]:
        typer.echo(f"stopped early: {s['aborted']} (results so far kept)", err=True)
    typer.echo(f"wrote {out / 'rounds.jsonl'} and {out / 'summary.json'}")


def _goodput_line(g: dict[str, Any], sent: int) -> str:
    """Goodput under the SLOs given, with what missed and failed; without SLOs, says so."""
    slos = [
        f"{name} <= {g[key]:g} ms"
        for name, key in (("TTFT", "slo_ttft_ms"), ("TPOT", "slo_tpot_ms"))
        if g[key] is not None
    ]
    if not slos:
        return "goodput: not measured, no SLO given (--slo-ttft / --slo-tpot in ms)"
    missed = [
        f"{g[key]} over {name}"
        for name, key in (("TTFT", "requests_missing_ttft"), ("TPOT", "requests_missing_tpot"))
        if g[key]
    ]
    share = "" if g["fraction"] is None else f"{g['fraction']:.1%} of {sent} sent; "
    return (
        f"goodput: {g['requests_meeting_slo']} requests met the SLOs ({share}{', '.join(slos)})\n"
        f"  {g['requests_missing_slo']} missed"
        + (f" ({', '.join(missed)})" if missed else "")
        + f", {g['requests_failed']} failed"
    )


def serve_sim(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    model: Annotated[str, typer.Option(help="Model name the server reports.")] = "serve-sim",
    block_size: Annotated[int, typer.Option(help="Tokens per cache block.")] = 16,
    capacity: Annotated[int, typer.Option(help="Cache capacity in blocks (0: unbounded).")] = 0,
    policy: Annotated[
        str, typer.Option(metavar="lru|fifo", help="Eviction policy: lru or fifo.")
    ] = "lru",
    ttl: Annotated[
        float | None, typer.Option(help="Idle seconds after which a block no longer hits.")
    ] = None,
    prefill_us: Annotated[
        float, typer.Option(help="Prefill time per uncached prompt token, microseconds.")
    ] = 0.0,
    decode_ms: Annotated[float, typer.Option(help="Decode time per output token, ms.")] = 0.0,
    batch_slowdown: Annotated[
        float, typer.Option(help="Extra slowdown per additional concurrent request (0.05 = 5 %).")
    ] = 0.0,
) -> None:
    """Run an OpenAI-compatible server that simulates a serving engine's timing and prefix cache.

    Example: tracetap serve-sim --port 8000 --capacity 100000 --prefill-us 50 --decode-ms 20
    """
    from tracetap.replay import server
    from tracetap.replay.simcache import POLICIES

    if policy not in POLICIES:
        raise UserError(f"--policy {policy}: use one of {', '.join(POLICIES)}")
    if block_size <= 0:
        raise UserError(f"--block-size {block_size}: must be 1 or more tokens")
    if capacity < 0:
        raise UserError(f"--capacity {capacity}: must be 0 (unbounded) or more blocks")
    cfg = server.SimConfig(
        model=model,
        block_size=block_size,
        capacity_blocks=capacity,
        policy=policy,
        ttl=ttl,
        prefill_per_token=prefill_us / 1e6,
        decode_per_token=decode_ms / 1e3,
        batch_slowdown=batch_slowdown,
    )

    def ready() -> None:
        typer.echo(f"serve-sim listening on http://{host}:{port}/v1", err=True)

    try:
        server.serve_sim(cfg, host=host, port=port, on_ready=ready)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} — pick another --port"
        ) from None


def register(app: typer.Typer) -> None:
    """Add `replay` and `serve-sim` to the tracetap command line."""
    app.command("replay")(replay)
    app.command("serve-sim")(serve_sim)
