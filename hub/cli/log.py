"""``lienthong log``: check the message log's hash chain, show its newest rows."""

from __future__ import annotations

from types import TracebackType
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from hub import settings as hub_settings
from hub.errors import HubError
from hub.store import Store

app = typer.Typer(
    help="The message log: verify its hash chain, show what crossed the hub.",
    no_args_is_help=True,
)

# Chains shorter than this verify in well under a second: no bar.
PROGRESS_THRESHOLD = 20_000

StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        help="Database URL (sqlite:///path or postgresql+psycopg://...); default: the "
        "settings' store_url (LIENTHONG_STORE_URL, or SQLite under data_dir).",
        show_default=False,
    ),
]


def _open(store_url: str | None) -> Store:
    try:
        url = store_url or hub_settings.load().store_url
        # No linker thread: reading commands write nothing unless asked (verify --link).
        return Store.open(url, deferred_log=False)
    except ValidationError as exc:
        typer.echo(f"error: the settings are invalid: {exc}", err=True)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


class _Bar:
    """A progress bar on stderr that appears only once the chain is known to be long."""

    def __init__(self, threshold: int) -> None:
        self._threshold = threshold
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def update(self, checked: int, total: int) -> None:
        if self._progress is None:
            if total < self._threshold:
                return
            self._progress = Progress(
                TextColumn("verifying"), BarColumn(), MofNCompleteColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("verify", total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=checked)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


@app.command()
def verify(
    store_url: StoreUrl = None,
    link: Annotated[
        bool,
        typer.Option(
            "--link",
            help="First chain the rows units of work parked and no linker has chained yet "
            "(PostgreSQL; the hub does it on its own while it runs).",
        ),
    ] = False,
) -> None:
    """Check the hash chain: every row's hash, every link, and the recorded chain head.
    Exit code 1 when the log was tampered with, 2 when the store cannot be opened."""
    store = _open(store_url)
    try:
        if link:
            typer.echo(f"linked {store.link_log()} parked rows")
        with _Bar(PROGRESS_THRESHOLD) as bar:
            report = store.verify_log(progress=bar.update)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    waiting = f"; {report.pending} newer rows not linked yet" if report.pending else ""
    if report.ok:
        head = f"seq {report.head_seq}, hash {report.head_hash}"
        typer.echo(f"OK: {report.checked} rows checked; chain head {head}{waiting}")
        return
    for problem in report.problems:
        typer.echo(f"PROBLEM {problem.kind}: {problem}")
    typer.echo(
        f"TAMPERED: {len(report.problems)} problem(s) in {report.checked} rows checked", err=True
    )
    raise typer.Exit(1)


@app.command()
def show(
    store_url: StoreUrl = None,
    dossier: Annotated[
        str | None, typer.Option("--dossier", help="Only rows of this dossier code.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many rows, newest.")] = 20,
) -> None:
    """Print the newest log rows, oldest first (no bodies: the log keeps only their digest)."""
    store = _open(store_url)
    try:
        rows = store.log_rows(subject=dossier, limit=limit)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    if not rows:
        typer.echo("no log rows" + (f" for dossier {dossier}" if dossier else ""))
        return
    for row in rows:
        arrow = "<-" if row.direction == "in" else "->"
        typer.echo(
            f"{row.seq:>8}  {row.at.isoformat(timespec='milliseconds')}  {row.direction:<3}  "
            f"{row.type or '-'}  {row.message_id}  {arrow} {row.peer or '-'}  "
            f"src={row.source or '-'}  dossier={row.subject or '-'}  "
            f"sha256={row.body_sha256[:16]}"
        )
