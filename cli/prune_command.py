"""`featstore prune`: remove the identities whose inputs are gone (a thin adapter over
`featstore.extraction.prune`)."""

from __future__ import annotations

from pathlib import Path

import click
from featstore_cli.common import library_errors
from featstore_cli.options import base_dir_option, input_dir_option, rebase_option, store_option

from featstore.errors import plural, printable

_SHOWN = 10


@click.command()
@input_dir_option("--face-dir", "Frontal images, as given to extract.")
@input_dir_option("--video-dir", "Video frames, as given to extract.")
@store_option()
@base_dir_option("As given to extract [default: common parent of the inputs].")
@rebase_option("The images moved (same folders under a new base dir): accept it after "
               "checking the layout (extract --rebase records it).")  # fmt: skip
@click.option(
    "--apply",
    is_flag=True,
    help="Remove them (one commit per table; --version before it still shows them). "
    "Without it, only list what would be removed.",
)
@library_errors
def prune(
    face_dir: Path, video_dir: Path, store: str, base_dir: Path | None, rebase: bool, apply: bool
) -> None:
    """Remove identities whose inputs are gone (frontal image and video folder deleted).

    A dry run unless --apply: lists the identities and rows each table would lose.
    """
    from featstore.extraction.prune import prune as run_prune

    done = run_prune(face_dir, video_dir, store, base_dir=base_dir, rebase=rebase, apply=apply)
    names = done.identities
    if not names:
        click.echo(
            f"nothing to remove: every identity of the store has inputs "
            f"({plural(done.inputs, 'identity')} found); nothing committed."
        )
        return
    shown = ", ".join(map(printable, names[:_SHOWN])) + (", ..." if len(names) > _SHOWN else "")
    verb = "removed" if done.applied else "would remove"
    click.echo(f"{plural(len(names), 'identity')} without inputs: {shown}")
    for m in done.models:
        where = f" (version {m.version})" if m.version is not None else ""
        click.echo(
            f"model {m.model}: {verb} {plural(len(m.identities), 'identity')}, "
            f"{plural(m.rows, 'row')}{where}"
        )
    for n in done.neighbors:
        where = f" (version {n.version})" if n.version is not None else ""
        click.echo(
            f"neighbors of {n.model}: {verb} {plural(n.rows, 'row')} naming them{where}; "
            "`featstore neighbors` computes the table again"
        )
    if not done.applied:
        click.echo("dry run: nothing removed; add --apply to remove them.")
