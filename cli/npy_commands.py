"""`featstore export-npy` and `featstore import-npy`: face000's npy training directory out
and in (docs/formats.md).

Thin adapters over `featstore.npy_dir.export.export_npy` and
`featstore.npy_dir.import_.import_npy`; `featstore_cli.main` registers them.
"""

from __future__ import annotations

from pathlib import Path

import click
from featstore_cli.common import library_errors
from featstore_cli.options import (
    base_dir_option,
    model_option,
    out_option,
    store_option,
    version_option,
    where_option,
)

from featstore.errors import printable_message


@click.command("export-npy")
@store_option("Store folder to read.")
@out_option("Directory to write (new, empty, or an earlier export); replaced atomically.")
@model_option(
    "Model to export [default: the store's ArcFace model]; any model works "
    "(feature_dim follows, e.g. a DINOv2 model for the older trainers)."
)
@where_option(
    "Keep only the frames matching this SQL predicate over the frames view, e.g. "
    "'abs(euler_angles[2]) < 30'."
)
@base_dir_option(
    "Write image paths relative to it [default: as stored, i.e. relative to the "
    "extraction's --base-dir, as the seed's script writes them when run from there]."
)
@version_option
@library_errors
def export_npy(
    store: str,
    out: Path,
    model: str | None,
    where: str | None,
    base_dir: Path | None,
    version: int | None,
) -> None:
    """Write face000's npy training directory (front_/video_ feature.npy, keypoints.npy,
    metadata.json, failed_images.json) for one model of the store."""
    from featstore.npy_dir.export import export_npy as run_export

    try:
        summary = run_export(
            store, out=out, model=model, where=where, base_dir=base_dir, version=version
        )
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; {out} was not written or changed") from None
    click.echo(printable_message(summary.format()))


@click.command("import-npy")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@store_option("Store to write (created if needed).")
@model_option("Model the rows belong to [default: arcface_buffalo_l for 512-dim features].")
@base_dir_option(
    "The folder the directory's relative image paths are relative to [default: the "
    "working directory, where the seed's script ran]."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the model's rows when they were made differently."
)
@library_errors
def import_npy(
    folder: Path, store: str, model: str | None, base_dir: Path | None, overwrite: bool
) -> None:
    """Load face000's npy training directory into the store, without extracting again."""
    from featstore.npy_dir.import_ import import_npy as run_import

    try:
        summary = run_import(
            folder, store=store, model=model, base_dir=base_dir, overwrite=overwrite
        )
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; {store} was left as it was") from None
    click.echo(printable_message(summary.format()))
