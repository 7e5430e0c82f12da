"""`featstore compact`, `vacuum`, `history` and `migrate`: looking after a store's tables.

Thin adapters over `featstore.store.maintenance` and `featstore.store.migrate`.
"""

from __future__ import annotations

from datetime import datetime, timezone

import click
from featstore_cli.common import library_errors
from featstore_cli.options import model_option, option_group, store_option

from featstore.errors import plural

# The store and, optionally, one of its models: what every maintenance command acts on.
_STORE_AND_MODEL = option_group(
    store_option(), model_option("Only this model [default: every model].")
)


@click.command()
@_STORE_AND_MODEL
@library_errors
def compact(store: str, model: str | None) -> None:
    """Rewrite a model's many small files into a few large ones sorted by identity."""
    from featstore.store.maintenance import compact as run_compact

    for done in run_compact(store, model=model):
        click.echo(
            f"{done.table} {done.model}: {done.files_before} files -> {done.files_after} "
            f"(version {done.version})"
        )


@click.command()
@_STORE_AND_MODEL
@click.option(
    "--retain",
    "retain_hours",
    type=click.FloatRange(0),
    default=168.0,
    show_default=True,
    help="Keep the files of every version of the last HOURS (time travel ends there).",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option(
    "--i-know-no-writer-is-running",
    "no_writer_running",
    is_flag=True,
    help="Allow --retain below 168 hours: only when no extract, import-json or compact "
    "is writing to the store (their uncommitted files would be deleted).",
)
@library_errors
def vacuum(
    store: str, model: str | None, retain_hours: float, dry_run: bool, no_writer_running: bool
) -> None:
    """Delete data files no recent version needs (old versions, killed runs' leftovers).

    Files newer than a table's newest commit are never deleted (a writer may commit them).
    """
    from featstore.store.maintenance import vacuum as run_vacuum

    for done in run_vacuum(
        store,
        model=model,
        retain_hours=retain_hours,
        dry_run=dry_run,
        no_writer_running=no_writer_running,
    ):
        verb = "would delete" if done.dry_run else "deleted"
        click.echo(f"{done.table} {done.model}: {verb} {len(done.removed)} files")


@click.command()
@_STORE_AND_MODEL
@click.option("--limit", type=click.IntRange(1), help="Show only the newest N versions.")
@library_errors
def history(store: str, model: str | None, limit: int | None) -> None:
    """List each model's versions: when, what operation, which command, rows added/removed."""
    from featstore.store.maintenance import history as run_history

    for name, versions in run_history(store, model=model, limit=limit).items():
        click.echo(f"model {name}:")
        click.echo(
            "  version  time (UTC)           operation     command                +rows    -rows"
        )
        for v in versions:
            when = datetime.fromtimestamp(v.timestamp_ms / 1000, timezone.utc)
            click.echo(
                f"  {v.version:>7}  {when:%Y-%m-%d %H:%M:%S}  {v.operation:<12}  "
                f"{(v.command or '-'):<20} {_count(v.rows_added):>7}  {_count(v.rows_removed):>7}"
            )


@click.command()
@click.argument("store", metavar="STORE")
@library_errors
def migrate(store: str) -> None:
    """Convert a version-1 store (one Parquet file per identity) to version 2, in place.

    Then adds the head pose columns computed from the stored keypoints (`featstore derive`).
    """
    from featstore.store.migrate import migrate as run_migrate

    done = run_migrate(store)
    if not done:
        click.echo(f"{store} is already a version-2 store; nothing to do.")
    for m in done:
        how = "finished (committed earlier)" if m.already_done else f"{m.rows} rows"
        click.echo(f"model {m.model}: {plural(m.identities, 'identity')}, {how}")
    if done:
        click.echo(f"{store} is now a version-2 store (one Delta Lake table per model).")
    _derive(store, None)


@click.command()
@_STORE_AND_MODEL
@library_errors
def derive(store: str, model: str | None) -> None:
    """Add columns computed from stored columns alone (the head pose, each definition) to
    older tables."""
    _derive(store, model)


def _derive(store: str, model: str | None) -> None:
    from featstore.extraction.derive import derive as run_derive

    for d in run_derive(store, model=model):
        if d.already_done:
            click.echo(f"model {d.model}: head pose columns present; nothing to derive.")
        else:
            click.echo(
                f"model {d.model}: head pose ({', '.join(d.definitions)}) derived for "
                f"{d.posed} of {d.rows} rows."
            )


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)
