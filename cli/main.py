"""The `featstore` command line: parse options, call the library, format the result."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click
from featstore_cli.common import library_errors, usage_errors
from featstore_cli.filter_command import filter_valid_images
from featstore_cli.json_commands import export_json, import_json
from featstore_cli.neighbors_command import neighbors
from featstore_cli.npy_commands import export_npy, import_npy
from featstore_cli.options import (
    base_dir_option,
    batch_size_option,
    detector_options,
    engine_options,
    input_dir_option,
    no_progress_option,
    precision_option,
    rebase_option,
    store_option,
    workers_option,
)
from featstore_cli.prune_command import prune
from featstore_cli.query_commands import info, query, render_table
from featstore_cli.report_command import report
from featstore_cli.store_commands import compact, derive, history, migrate, vacuum
from featstore_cli.validate_command import validate

from featstore import __version__
from featstore.extraction import PROGRESS_LOGGER
from featstore.extraction.dinov2_specs import DEFAULT_MODEL

if TYPE_CHECKING:
    from featstore.extraction.detection import DetectorSettings
    from featstore.extraction.ray_engine import RayOptions


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="featstore")
@click.option("-v", "--verbose", is_flag=True, help="Log what featstore is doing.")
def main(verbose: bool) -> None:
    """featstore: InsightFace + DINOv2 (and ArcFace) features of face data, in Delta tables."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # The --no-progress heartbeat (images/s, ETA) is shown without -v.
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)


@main.command()
@input_dir_option("--face-dir", "Frontal images: <face-dir>/<identity>.<ext>.")
@input_dir_option("--video-dir", "Video frames: <video-dir>/<identity>/<frame>.<ext>.")
@store_option(help="Store folder, or a URI on object storage (s3://bucket/prefix).")
@base_dir_option("Stored image paths are relative to it [default: common parent of the inputs].")
@click.option(
    "--model",
    "models",
    multiple=True,
    default=(DEFAULT_MODEL,),
    show_default=True,
    help="DINOv2 model, or `arcface` (the pack's recognition model, stored as "
    "arcface_<pack>); repeat to run several in one pass.",
)
@click.option(
    "--weights",
    multiple=True,
    metavar="[MODEL=]PATH",
    help="Checkpoint (<model>_pretrain.pth) overriding the torch hub cache; repeatable.",
)
@click.option(
    "--dinov2-source",
    type=click.Choice(["featstore", "hub"]),
    default="featstore",
    show_default=True,
    help="featstore's DINOv2 code, or the official code through torch.hub.load.",
)
@detector_options()
@click.option("--cpu", is_flag=True, help="Run everything on the CPU.")
@click.option("--device", help="torch device, e.g. cuda:1 [default: cuda if available].")
@batch_size_option()
@workers_option
@precision_option
@click.option(
    "--overwrite",
    is_flag=True,
    help="Redo every identity, replacing rows made with other settings.",
)
@no_progress_option(
    "No progress bar; a log line with images/s and ETA every minute instead (for logs)."
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    metavar="N",
    help="Only the first N identities by name: try a few before a long run.",
)
@rebase_option(
    "The images moved (same folders under a new base dir): keep the rows and record "
    "the new base dir instead of refusing."
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check inputs, models and the store's settings; print what would be extracted; "
    "write nothing.",
)
@click.option(
    "--commit-every",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Commit to the store every N identities (or 10 s); a kill loses at most that batch.",
)
@click.option(
    "--shard",
    metavar="I/N",
    help="Extract only shard I (0..N-1) of N, split by a hash of the identity name, so N "
    "independent jobs fill one store (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).",
)
@engine_options
@library_errors
def extract(
    face_dir: Path,
    video_dir: Path,
    store: str,
    base_dir: Path | None,
    models: tuple[str, ...],
    weights: tuple[str, ...],
    dinov2_source: str,
    detector: DetectorSettings,
    cpu: bool,
    device: str | None,
    batch_size: int,
    workers: int | None,
    precision: str,
    overwrite: bool,
    no_progress: bool,
    commit_every: int,
    limit: int | None,
    rebase: bool,
    dry_run: bool,
    shard: str | None,
    engine: str,
    ray_options: RayOptions | None,
) -> None:
    """Detect faces and extract DINOv2 (and ArcFace) features of every image into the store.

    Each image with a face also gets its landmarks, the spherical angles of docs/formats.md and the
    head pose face000-pose-v1 (euler_angles, rotation_matrix, pose_landmarks_3d): solved
    by OpenCV's EPnP from the five keypoints to the seed's mean face, focal length = image
    width; null when the keypoints are degenerate (-v logs why).
    """
    from featstore.extraction.inputs import parse_shard
    from featstore.extraction.options import ExtractOptions
    from featstore.extraction.pipeline import RuntimeOptions
    from featstore.extraction.pipeline import extract as run_extract
    from featstore.extraction.recognition import is_arcface
    from featstore.extraction.weights import parse_weights_options

    if cpu and device and device != "cpu":
        raise click.UsageError("--cpu and --device are exclusive; give one.")
    runtime = RuntimeOptions(
        device="cpu" if cpu else device,
        batch_size=batch_size,
        workers=workers,
        precision=precision,  # type: ignore[arg-type]
        dinov2_source=dinov2_source,  # type: ignore[arg-type]
        progress=not no_progress,
        commit_identities=commit_every,
    )
    parsed_shard = parse_shard(shard) if shard is not None else None
    # ArcFace's weights come with the pack: a bare --weights PATH is DINOv2's.
    overrides = parse_weights_options(weights, [m for m in models if not is_arcface(m)])
    with usage_errors():  # flags that do not go together, e.g. Ray's without --engine ray
        options = ExtractOptions(
            models=models,
            weights=overrides,
            detector=detector,
            runtime=runtime,
            overwrite=overwrite,
            shard=parsed_shard,
            engine=engine,  # type: ignore[arg-type]
            ray_options=ray_options,
            limit=limit,
            dry_run=dry_run,
            rebase=rebase,
        )
    summary = run_extract(face_dir, video_dir, store, base_dir=base_dir, options=options)
    click.echo(summary.format())  # names escaped by ExtractSummary.format


@main.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Where the generated data, stand-in models and store go.",
)
@no_progress_option()
@library_errors
def demo(workdir: Path, no_progress: bool) -> None:
    """Run extraction end to end on a generated dataset with stand-in models (offline)."""
    from featstore.demo import (
        build_demo_inputs,
        export_demo_npy,
        extract_demo,
        write_demo_report,
    )
    from featstore.store import Store

    click.echo(f"generating a small dataset and stand-in models in {workdir} ...")
    inputs = build_demo_inputs(workdir)
    store = workdir / "store"
    summary = extract_demo(inputs, store, progress=not no_progress)
    click.echo(summary.format())
    sql = (
        "SELECT identity, frames_total, frames_ok, valid FROM identities "
        "WHERE model = 'dinov2_vits14' ORDER BY identity"
    )
    click.echo(f'\nfeatstore query --store {store} "{sql}"')
    click.echo(render_table(Store(store).sql(sql), 40), nl=False)
    click.echo(
        "The DINOv2 weights are random and the detector is synthetic: the pipeline is real, "
        "the feature values are not."
    )
    written = write_demo_report(workdir)
    click.echo(f"\n{written.format()}\nopen it in a browser: {written.path}")
    npy = export_demo_npy(workdir)
    click.echo(
        f"\nfeatstore export-npy --store {store} --out {npy.out}\n{npy.format()}\n"
        "(face000's npy training directory, from the ArcFace model; check it with "
        f"`featstore validate {npy.out}`)"
    )
    click.echo(
        "\nThe same extraction from the command line (it reuses the stand-in models; "
        "rerun, it finds everything up to date):\n" + inputs.extract_command(store)
    )


for _command in (query, info, export_json, import_json, export_npy, validate, filter_valid_images):
    main.add_command(_command)
for _command in (report, compact, vacuum, history, migrate, derive, import_npy, neighbors, prune):
    main.add_command(_command)
