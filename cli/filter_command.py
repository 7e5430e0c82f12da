"""`featstore filter-valid-images`: a drop-in for the seed's `filter_valid_images.py`.

Same flags (`--video_dir --face_dir --output_file --base_dir --dinov2_model --use_cpu`)
and defaults, so one command line swaps for the other and the trainer runs unchanged:
extract into a store (kept, so reruns only redo what changed), then export the JSON.
"""

from __future__ import annotations

from pathlib import Path

import click
from featstore_cli.common import library_errors

from featstore.extraction.dinov2_specs import DEFAULT_MODEL


@click.command("filter-valid-images")
@click.option(
    "--video_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Video frames folder.",
)
@click.option(
    "--face_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Frontal images folder.",
)
@click.option(
    "--output_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON to write.",
)
@click.option(
    "--base_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Paths in the JSON are relative to it [default: the output file's folder].",
)
@click.option("--dinov2_model", default=DEFAULT_MODEL, show_default=True, help="DINOv2 model.")
@click.option("--use_cpu", is_flag=True, help="Run on the CPU (default: GPU when available).")
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    help="featstore store to extract into [default: <output_file>.featstore beside the JSON].",
)
@click.option(
    "--weights", type=click.Path(dir_okay=False, path_type=Path), help="DINOv2 checkpoint."
)
@click.option(
    "--insightface_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("~/.insightface"),
    show_default=True,
    help="Folder holding models/buffalo_l/.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@library_errors
def filter_valid_images(
    video_dir: Path,
    face_dir: Path,
    output_file: Path,
    base_dir: Path | None,
    dinov2_model: str,
    use_cpu: bool,
    store: Path | None,
    weights: Path | None,
    insightface_root: Path,
    no_progress: bool,
) -> None:
    """Extract, keep valid images, write the trainer's JSON (the seed script's interface)."""
    from featstore.extraction.detection import DetectorSettings
    from featstore.extraction.pipeline import RuntimeOptions, extract
    from featstore.trainer_json.export import export_json

    base = base_dir or output_file.absolute().parent
    store = store or output_file.with_name(output_file.name + ".featstore")
    summary = extract(
        face_dir,
        video_dir,
        store,
        models=[dinov2_model],
        weights={dinov2_model: weights} if weights else None,
        base_dir=base,
        detector=DetectorSettings(root=insightface_root),
        runtime=RuntimeOptions(device="cpu" if use_cpu else None, progress=not no_progress),
    )
    click.echo(summary.format())
    exported = export_json(store, out=output_file, model=dinov2_model, base_dir=base)
    click.echo(
        f"wrote {output_file}: {exported.identities} valid identities, {exported.frames} frames"
    )
