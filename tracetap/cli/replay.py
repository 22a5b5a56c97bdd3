"""`tracetap replay` and `tracetap serve-sim`: replay recorded agent workloads against an
OpenAI-compatible server (replay.runner.replay), and a simulated one (replay.server).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from tracetap.replay.plan import Plan
    from tracetap.replay.prompts import PromptBuilder, Tokenizer
    from tracetap.replay.runner import ReplayConfig, RoundResult

__all__ = ["register"]


def replay(
    input: Annotated[
        str,
        typer.Argument(help="TraceLab JSONL(.gz), replay CSV, Mooncake JSONL, or a database URL."),
    ],
    base_url: Annotated[str, typer.Option(help="Server base URL, e.g. http://127.0.0.1:8000/v1.")],
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
    slo_ttft: Annotated[float | None, typer.Option(help="TTFT SLO in ms for goodput.")] = None,
    slo_tpot: Annotated[float | None, typer.Option(help="TPOT SLO in ms for goodput.")] = None,
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

    Example: tracetap replay trace.jsonl --base-url http://127.0.0.1:8000/v1 --model m --speedup 10
    """
    from tracetap.replay.plan import cap_idle, load_plan
    from tracetap.replay.prompts import PromptBuilder, load_tokenizer
    from tracetap.replay.runner import ReplayConfig, ReplayError, preflight

    try:
        plan = load_plan(input, block_size=block_size)
        if max_idle is not None:
            cap_idle(plan, max_idle)
        tok = load_tokenizer(tokenizer)
    except (OSError, ValueError, KeyError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    if speedup <= 0:
        raise typer.BadParameter("--speedup must be positive")
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
    err = typer.echo
    if preflight_check:
        try:
            check = asyncio.run(preflight(cfg, tokenizer=tok))
        except ReplayError as exc:
            err(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        if check["warning"]:
            err(f"warning: {check['warning']}", err=True)
    builder = PromptBuilder(seed=seed, vocab_size=tok.vocab_size if tok else 32000)
    summary = _replay_with_progress(plan, cfg, builder, tok, out)
    _print_summary(summary, out)
    if summary["aborted"] or summary["rounds_ok"] == 0 and summary["rounds_planned"]:
        raise typer.Exit(1)


def _replay_with_progress(
    plan: Plan, cfg: ReplayConfig, builder: PromptBuilder, tok: Tokenizer | None, out: Path
) -> dict[str, Any]:
    """replay.runner.replay, with a live progress bar when stderr is a terminal."""
    from tracetap.replay.runner import replay as run

    if not sys.stderr.isatty():
        return run(plan, cfg, out, builder=builder, tokenizer=tok)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("replay", total=plan.n_rounds, status="")
        errors, late = 0, 0.0

        def tick(r: RoundResult) -> None:
            nonlocal errors, late
            errors += r.error is not None
            late = max(late, r.lateness_ms or 0.0)
            bar.update(
                task,
                advance=1,
                status=f"errors {errors}  ttft {r.ttft_ms or 0:.0f} ms  max late {late:.1f} ms",
            )

        return run(plan, cfg, out, builder=builder, tokenizer=tok, on_result=tick)


def _print_summary(s: dict[str, Any], out: Path) -> None:
    def p(key: str) -> str:
        v = s.get(key)
        return "-" if not v else f"p50 {v['p50']:.1f}  p99 {v['p99']:.1f}"

    def rate(key: str) -> str:
        return "-" if s.get(key) is None else f"{s[key]:.1%}"

    typer.echo(
        f"rounds: {s['rounds_ok']} ok / {s['rounds_sent']} sent / "
        f"{s['rounds_planned']} planned ({s['mode']})"
    )
    typer.echo(
        f"lateness ms: {p('lateness_ms')}   TTFT ms: {p('ttft_ms')}   "
        f"TPOT ms: {p('tpot_ms')}   e2e ms: {p('e2e_ms')}"
    )
    typer.echo(
        f"hit rate: planned {rate('planned_hit_rate')}, reusable "
        f"{rate('reusable_hit_rate')}, server {rate('server_hit_rate')}"
    )
    w = s.get("warmup") or {}
    if w.get("requests"):
        typer.echo(
            f"warm-up: {w['requests']} shared prefixes ({w['prompt_tokens']} tokens) sent first"
            + (f", {w['errors']} failed" if w.get("errors") else "")
        )
    g = s["goodput"]
    if g["slo_ttft_ms"] is not None or g["slo_tpot_ms"] is not None:
        typer.echo(f"goodput: {g['requests_meeting_slo']} requests met the SLOs")
    if s["errors"]:
        typer.echo(f"errors: {s['errors']} {s['error_kinds']}", err=True)
    if s["aborted"]:
        typer.echo(f"stopped early: {s['aborted']} (results so far kept)", err=True)
    typer.echo(f"wrote {out / 'rounds.jsonl'} and {out / 'summary.json'}")


def serve_sim(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    model: Annotated[str, typer.Option(help="Model name the server reports.")] = "serve-sim",
    block_size: Annotated[int, typer.Option(help="Tokens per cache block.")] = 16,
    capacity: Annotated[int, typer.Option(help="Cache capacity in blocks (0: unbounded).")] = 0,
    policy: Annotated[str, typer.Option(help="Eviction policy: lru or fifo.")] = "lru",
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
        raise typer.BadParameter(f"--policy must be one of {', '.join(POLICIES)}")
    if block_size <= 0 or capacity < 0:
        raise typer.BadParameter("--block-size must be positive and --capacity >= 0")
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
    typer.echo(f"serve-sim listening on http://{host}:{port}/v1", err=True)
    try:
        server.serve_sim(cfg, host=host, port=port)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from exc


def register(app: typer.Typer) -> None:
    """Add `replay` and `serve-sim` to the tracetap command line."""
    app.command("replay")(replay)
    app.command("serve-sim")(serve_sim)
