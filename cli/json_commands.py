"""`featstore export-json` and `featstore import-json`: the trainer's JSON out and in.

Thin adapters over `featstore.trainer_json.export.export_json` and
`featstore.trainer_json.importer.import_json`;
`featstore_cli.main` registers them on the `featstore` group.
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


@click.command("export-json")
@store_option(help="Store folder to read, or its URI on object storage (s3://bucket/prefix).")
@out_option("JSON file to write (its folder must exist); replaced atomically.")
@model_option(
    "Model to export [default: the store's only DINOv2 model; ArcFace is never exported]."
)
@base_dir_option("Paths in the file are relative to it [default: the --out file's folder].")
@where_option(
    "Keep only the frames matching this SQL predicate over the columns of the frames "
    "view, e.g. 'abs(avg_angle) < 30'; identities left without a frame are dropped "
    "(total_video_images still counts every frame)."
)
@click.option(
    "--format",
    "json_format",
    type=click.Choice(["new", "old", "3d"]),
    default="new",
    show_default=True,
    help="new: features, landmarks and angles (valid_images.json); old: image paths only; "
    "3d: the 3D trainer's valid_images_3d.json, with the head pose face000-pose-v1 (yaw, "
    "pitch, roll as the seed names them, rotation matrix, posed 3D keypoints) solved by "
    "EPnP from the five keypoints; frames without a pose are left out.",
)
@click.option(
    "--indent",
    type=click.IntRange(0),
    help="Spaces per nesting level, as json.dumps(indent=N) [default: compact].",
)
@version_option
@library_errors
def export_json(
    store: str,
    out: Path,
    model: str | None,
    base_dir: Path | None,
    where: str | None,
    json_format: str,
    indent: int | None,
    version: int | None,
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
            version=version,
        )
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; {out} was not written or changed") from None
    click.echo(printable_message(summary.format()))


@click.command("import-json")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@store_option(help="Store to write (created if needed): a folder, or a URI on object storage.")
@model_option("Model the rows belong to [default: the file's dinov2_model].")
@base_dir_option("Relative paths in the file resolve against it [default: the file's folder].")
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
    """Load a trainer JSON (valid_images.json, or the 3D valid_images_3d.json) into the store.

    The format is told from the file: identities with face_euler_angles /
    face_rotation_matrix (or frames with euler_angles) are 3D; their pose fills the pose
    columns.
    """
    from featstore.trainer_json.importer import import_json as run_import

    try:
        summary = run_import(file, store=store, model=model, base_dir=base_dir, overwrite=overwrite)
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; {store} was left as it was") from None
    click.echo(printable_message(summary.format()))
