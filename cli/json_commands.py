"""`featstore export-json` and `featstore import-json`: the trainer's JSON out and in.

Thin adapters over `featstore.trainer_json.export.export_json` and
`featstore.trainer_json.importer.import_json`;
`featstore_cli.main` registers them on the `featstore` group.
"""

from __future__ import annotations

from pathlib import Path

import click
from featstore_cli.common import library_errors


@click.command("export-json")
@click.option(
    "--store",
    required=True,
    metavar="PATH|URI",
    help="Store folder to read, or its URI on object storage (s3://bucket/prefix).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="JSON file to write (its folder must exist); replaced atomically.",
)
@click.option("--model", help="Model to export [required when the store holds several].")
@click.option(
    "--base-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Paths in the file are relative to it [default: the --out file's folder].",
)
@click.option(
    "--where",
    metavar="SQL",
    help="Keep only the frames matching this SQL predicate over the columns of the frames "
    "view, e.g. 'abs(avg_angle) < 30'; identities left without a frame are dropped "
    "(total_video_images still counts every frame).",
)
@click.option(
    "--format",
    "json_format",
    type=click.Choice(["new", "old"]),
    default="new",
    show_default=True,
    help="new: features, landmarks and angles; old: image paths only.",
)
@click.option(
    "--indent",
    type=click.IntRange(0),
    help="Spaces per nesting level, as json.dumps(indent=N) [default: compact].",
)
@library_errors
def export_json(
    store: str,
    out: Path,
    model: str | None,
    base_dir: Path | None,
    where: str | None,
    json_format: str,
    indent: int | None,
) -> None:
    """Write the trainer's JSON (valid identities, ok frames) for one model of the store."""
    from featstore.trainer_json.export import export_json as run_export

    try:
        summary = run_export(
            store,
            out=out,
            model=model,
            base_dir=base_dir,
            where=where,
            format=json_format,  # type: ignore[arg-type]
            indent=indent,
        )
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; {out} was not written or changed") from None
    click.echo(summary.format())


@click.command("import-json")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--store",
    required=True,
    help="Store folder to write (created if needed; a local folder).",
)
@click.option("--model", help="Model the rows belong to [default: the file's dinov2_model].")
@click.option(
    "--base-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Relative paths in the file resolve against it [default: the file's folder].",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the model's rows when they were made differently (extracted, or "
    "imported from another file).",
)
@library_errors
def import_json(
    file: Path, store: str, model: str | None, base_dir: Path | None, overwrite: bool
) -> None:
    """Load a new-format trainer JSON (e.g. the seed's valid_images.json) into the store."""
    from featstore.store.location import require_local
    from featstore.trainer_json.importer import import_json as run_import

    folder = require_local(store, "import-json")

    try:
        summary = run_import(
            file, store=folder, model=model, base_dir=base_dir, overwrite=overwrite
        )
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; {folder} was left as it was") from None
    click.echo(summary.format())
