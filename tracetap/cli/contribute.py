"""`tracetap contribute`: a reviewed, publishable dataset folder from the store; `merge` joins
several, `verify` checks one against its manifest. The work is tracetap.contribute's.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from tracetap.cli.errors import MISTAKE, NOTHING, UserError
from tracetap.cli.options import (
    Agent,
    Db,
    Kind,
    Model,
    Project,
    Session,
    Since,
    Until,
    db_url,
    make_filter,
    no_match,
    open_store,
)

if TYPE_CHECKING:
    from tracetap.contribute.build import Decide, Outcome
    from tracetap.contribute.collect import Progress as Progress_
    from tracetap.contribute.review import Review

__all__ = ["contribute_app", "register"]

out = Console(soft_wrap=False)
err = Console(stderr=True, soft_wrap=True)
contribute_app = typer.Typer(invoke_without_command=True)

_PRIVACY = "Privacy"
_PACKAGE = "Package"
Output = Annotated[
    Path | None, typer.Option("-o", "--output", help="Dataset folder to create (new or empty).")
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the review only; write nothing.")]
Yes = Annotated[
    bool,
    typer.Option("--yes", help="Write even when the second scan finds residual hits."),
]
Push = Annotated[
    str | None,
    typer.Option(
        "--push",
        metavar="REPO",
        help="Upload to this Hugging Face dataset repo (HF_TOKEN, HF_ENDPOINT).",
        rich_help_panel=_PACKAGE,
    ),
]
Private = Annotated[
    bool,
    typer.Option("--private", help="Create the pushed repo private.", rich_help_panel=_PACKAGE),
]
K = Annotated[
    int,
    typer.Option(
        "--k",
        min=1,
        help="Flag projects, tools and models seen in fewer sessions than this.",
        rich_help_panel=_PRIVACY,
    ),
]
Title = Annotated[str, typer.Option(help="Dataset card title.", rich_help_panel=_PACKAGE)]
License = Annotated[
    str, typer.Option(help="License id for the dataset card.", rich_help_panel=_PACKAGE)
]


class _Rate(ProgressColumn):
    """Items per second of a task ("" until rich has measured it)."""

    def render(self, task: Task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:,.0f}/s")


@contextmanager
def _progress(console: Console = err) -> Iterator[Progress_ | None]:
    """A progress callback (label, done, total) drawing a rich bar per step (%, rate, ETA)
    on a terminal; None when `console` is not one."""
    if not console.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(label: str, done: int, total: int | None) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done, total=total)

    with bar:
        yield update


def _decide(yes: bool, dry_run: bool, empty: UserError | None) -> Decide:
    def decide(review: Review) -> bool:
        if review.stats.rounds == 0 and review.excluded:
            raise UserError(
                f"nothing left to share: the {len(review.excluded)} project(s) selected are "
                "excluded (--exclude-project, .tracetapignore)",
                NOTHING,
            )
        if review.stats.rounds == 0 and empty is not None:
            raise empty
        out.print(review.rich())
        if dry_run:
            return False
        if review.hits and not yes:
            raise UserError(
                f"{len(review.hits)} residual hit(s) in the output (listed above): nothing "
                "written — exclude or hide them, or pass --yes to share anyway",
                MISTAKE,
            )
        return True

    return decide


def _report(outcome: Outcome, push: str | None, private: bool) -> None:
    for name, reasons in sorted(outcome.excluded_local.items()):
        err.print(f"excluded project {name}: {'; '.join(reasons)}", highlight=False)
    if not outcome.written:
        err.print("dry run: nothing written", highlight=False)
        return
    rows = outcome.manifest.get("rows", {})
    err.print(
        f"wrote {outcome.out}: {rows.get('rounds', 0):,} rounds in {rows.get('sessions', 0):,} "
        "sessions (README.md, REVIEW.md, manifest.json, data/, tracelab/)",
        highlight=False,
    )
    if push:
        from tracetap.contribute.build import push as upload

        try:
            url = upload(outcome.out, push, private=private)
        except Exception as exc:  # the Hub's and the network's errors: one line, folder kept
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"push to {push} failed: {reason} — the dataset is in {outcome.out}; check "
                "HF_TOKEN and the network, then push again with `hf upload`",
                MISTAKE,
            ) from exc
        err.print(f"pushed to {push}: {url}", highlight=False)


@contribute_app.callback()
def contribute(
    ctx: typer.Context,
    output: Output = None,
    db: Db = None,
    since: Since = None,
    until: Until = None,
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
    kind: Kind = "agent",
    contributor: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Contributor name (default: your login); shared only as a keyed pseudonym.",
            rich_help_panel=_PRIVACY,
        ),
    ] = None,
    exclude_project: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-project",
            help="Leave out projects containing this text. Repeatable.",
            rich_help_panel=_PRIVACY,
        ),
    ] = None,
    workspace: Annotated[
        list[Path] | None,
        typer.Option(
            "--workspace",
            help="Folder of project folders searched for .tracetapignore (default: the "
            "current folder). Repeatable.",
            rich_help_panel=_PRIVACY,
        ),
    ] = None,
    time_granularity: Annotated[
        str | None,
        typer.Option(
            help="Round timestamps down to this: 1s, 15m, 1h, 1d.", rich_help_panel=_PRIVACY
        ),
    ] = None,
    shift_clock: Annotated[
        bool,
        typer.Option(
            "--shift-clock",
            help="Move each session's clock back by a keyed offset (up to a year).",
            rich_help_panel=_PRIVACY,
        ),
    ] = False,
    hide_rare_tools: Annotated[
        bool,
        typer.Option(
            "--hide-rare-tools",
            help="Pseudonymize tool names used in fewer than --k sessions.",
            rich_help_panel=_PRIVACY,
        ),
    ] = False,
    k: K = 5,
    key_file: Annotated[
        Path | None,
        typer.Option(
            envvar="TRACETAP_KEY_FILE",
            help="Pseudonym key file (default: the installation key).",
            rich_help_panel=_PRIVACY,
        ),
    ] = None,
    yes: Yes = False,
    dry_run: DryRun = False,
    push: Push = None,
    private: Private = False,
    title: Title = "Coding agent traces (tracetap)",
    license: License = "cc-by-4.0",
) -> None:
    """Make a dataset to publish: review, TraceLab Parquet + JSONL, card, manifest.

    The privacy review (what each field shares, placeholders, a second scan of
    the output, k-anonymity checks) prints first and is kept as REVIEW.md. No
    text of any kind is shared.

    Example: tracetap contribute -o ds --since 30d --shift-clock --time-granularity 1h
    """
    if ctx.invoked_subcommand is not None:
        return
    if output is None:
        raise UserError("give the dataset folder to create with -o/--output")
    from tracetap.contribute.build import Options
    from tracetap.contribute.build import contribute as build
    from tracetap.contribute.shape import parse_granularity
    from tracetap.exporters.tracelab import KINDS
    from tracetap.privacy.keys import load_key

    if kind not in KINDS:
        raise UserError(f"--kind must be one of {', '.join(KINDS)}")
    if time_granularity is not None:
        try:
            parse_granularity(time_granularity)
        except ValueError as exc:
            raise UserError(f"--time-granularity: {exc}") from None
    flt = make_filter(since, until, agent, model, project, session)
    url = db_url(db)
    engine = open_store(url)
    try:
        key = load_key(key_file)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    opts = Options(
        contributor=contributor or getpass.getuser(),
        kind=kind,
        exclude_projects=tuple(exclude_project or ()),
        workspaces=tuple(workspace or (Path.cwd(),)),
        time_granularity=time_granularity,
        shift_clock=shift_clock,
        hide_rare_tools=hide_rare_tools,
        k=k,
        title=title,
        license=license,
    )
    try:
        with _progress() as progress:
            outcome = build(
                engine,
                flt,
                output,
                key,
                opts,
                _decide(yes, dry_run, no_match(flt, url)),
                progress=progress,
            )
    except FileExistsError as exc:
        raise UserError(f"{exc} (-o)") from None
    finally:
        engine.dispose()
    _report(outcome, push, private)


@contribute_app.command("merge")
def merge(
    sources: Annotated[
        list[Path], typer.Argument(help="Dataset folders made by tracetap contribute.")
    ],
    output: Output = None,
    k: K = 5,
    yes: Yes = False,
    dry_run: DryRun = False,
    push: Push = None,
    private: Private = False,
    title: Title = "Coding agent traces (tracetap)",
    license: License = "cc-by-4.0",
) -> None:
    """Merge contributions: duplicates dropped, review and card made anew.

    Example: tracetap contribute merge team-a team-b -o all
    """
    from tracetap.contribute.build import merge as build

    if output is None:
        raise UserError("give the merged dataset folder to create with -o/--output")
    if len(sources) < 2:
        raise UserError("give at least two dataset folders to merge")
    empty = UserError("the datasets hold no rounds: nothing to merge", NOTHING)
    try:
        with _progress() as progress:
            outcome = build(
                sources,
                output,
                _decide(yes, dry_run, empty),
                k=k,
                title=title,
                license=license,
                progress=progress,
            )
    except FileExistsError as exc:
        raise UserError(f"{exc} (-o)") from None
    except FileNotFoundError as exc:
        raise UserError(f"{exc} — give folders made by tracetap contribute") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _report(outcome, push, private)


@contribute_app.command("verify")
def verify(
    folder: Annotated[Path, typer.Argument(help="A dataset folder.")],
) -> None:
    """Check every file of a dataset folder against its manifest's SHA-256.

    Example: tracetap contribute verify ds
    """
    from tracetap.contribute.package import verify as check

    try:
        problems = check(folder)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    for p in problems:
        out.print(p, highlight=False)
    if problems:
        raise UserError(f"{folder}: {len(problems)} file(s) do not match the manifest")
    out.print(f"{folder}: every file matches manifest.json", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(contribute_app, name="contribute")
