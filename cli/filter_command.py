"""`featstore filter-valid-images`: a drop-in for the seed's `filter_valid_images.py`.

Same flags (`--video_dir --face_dir --output_file --base_dir --dinov2_model --use_cpu`)
and defaults, so one command line swaps for the other and the trainer runs unchanged:
extract into a store (kept, so reruns only redo what changed), then export the JSON.
featstore's own settings come in the seed's spelling (`--batch_size`, `--insightface_root`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from featstore_cli.common import library_errors
from featstore_cli.options import (
    base_dir_option,
    batch_size_option,
    detector_options,
    input_dir_option,
    no_progress_option,
    precision_option,
    store_option,
    workers_option,
)

from featstore.errors import FeatstoreError, plural, printable_message
from featstore.extraction.dinov2_specs import DEFAULT_MODEL

if TYPE_CHECKING:
    from featstore.extraction.detection import DetectorSettings

F = TypeVar("F", bound=Callable[..., Any])

# The library's hints name `extract`'s flags; this command spells them the seed's way.
_SEED_FLAGS = [
    (re.compile(r"--weights [\w.-]+=PATH"), "--weights PATH"),
    (re.compile(r"--insightface-root\b"), "--insightface_root"),
    (re.compile(r"--batch-size\b"), "--batch_size"),
    (re.compile(r"--base-dir\b"), "--base_dir"),
    (re.compile(r"--model\b"), "--dinov2_model"),
    (re.compile(r"--cpu\b"), "--use_cpu"),
    (re.compile(r"--device [\w:]+"), "--use_cpu"),
]


def seed_flags(message: str) -> str:
    """`message` with extract's flags renamed to this command's."""
    for pattern, replacement in _SEED_FLAGS:
        message = pattern.sub(replacement, message)
    return message


def _seed_flag_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FeatstoreError as exc:
            raise type(exc)(seed_flags(str(exc))) from exc

    return wrapper  # type: ignore[return-value]


@click.command("filter-valid-images")
@input_dir_option("--video_dir", "Video frames folder.")
@input_dir_option("--face_dir", "Frontal images folder.")
@click.option(
    "--output_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON to write.",
)
@base_dir_option(
    "Paths in the JSON are relative to it [default: the output file's folder].", "--base_dir"
)
@click.option("--dinov2_model", default=DEFAULT_MODEL, show_default=True, help="DINOv2 model.")
@click.option("--use_cpu", is_flag=True, help="Run on the CPU (default: GPU when available).")
@store_option(  # a local folder kept beside the JSON, and optional
    help="featstore store to extract into [default: <output_file>.featstore beside the JSON].",
    required=False,
    metavar=None,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--weights", type=click.Path(dir_okay=False, path_type=Path), help="DINOv2 checkpoint."
)
@detector_options("--insightface_root", tuning=False)
@batch_size_option("--batch_size")
@precision_option
@workers_option
@no_progress_option()
@library_errors
@_seed_flag_errors
def filter_valid_images(
    video_dir: Path,
    face_dir: Path,
    output_file: Path,
    base_dir: Path | None,
    dinov2_model: str,
    use_cpu: bool,
    store: Path | None,
    weights: Path | None,
    detector: DetectorSettings,
    batch_size: int,
    precision: str,
    workers: int | None,
    no_progress: bool,
) -> None:
    """Extract, keep valid images, write the trainer's JSON (the seed script's interface)."""
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
        detector=detector,
        runtime=RuntimeOptions(
            device="cpu" if use_cpu else None,
            batch_size=batch_size,
            workers=workers,
            precision=precision,  # type: ignore[arg-type]
            progress=not no_progress,
        ),
    )
    click.echo(printable_message(summary.format()))
    exported = export_json(store, out=output_file, model=dinov2_model, base_dir=base)
    click.echo(
        f"wrote {output_file}: "
        f"{plural(exported.identities, 'valid identity', 'valid identities')}, "
        f"{plural(exported.frames, 'frame')}"
    )
