"""Options several commands share, each declared once (sqlite-utils' `output_options`).

Each function returns a decorator that adds one option, or a group of them, to a command.
Where a command's wording differs (what `--store` is for, what `--model` selects), the
caller passes its own help text; the flag, its type and its metavar stay the same
everywhere. The extraction groups (`detector_options`, `engine_options`) hand the
command one library object (`DetectorSettings`, `RayOptions`) instead of its flags.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from featstore_cli.common import usage_errors

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

STORE_HELP = "The store folder, or its URI on object storage (s3://bucket/prefix)."


def option_group(*decorators: Decorator[F]) -> Decorator[F]:
    """One decorator applying `decorators`, listed in the order `--help` shows them."""

    def apply(func: F) -> F:
        for decorate in reversed(decorators):
            func = decorate(func)
        return func

    return apply


def store_option(help: str = STORE_HELP, **overrides: Any) -> Decorator[F]:
    """`--store PATH|URI` (required): a string, so a URI reaches the library whole."""
    settings: dict[str, Any] = {"required": True, "metavar": "PATH|URI", "help": help}
    return click.option("--store", **{**settings, **overrides})


def model_option(help: str) -> Decorator[F]:
    """`--model`: one model of the store (each command says what it does with it)."""
    return click.option("--model", help=help)


def version_option(func: F) -> F:
    """`--version N`: read that version of the model's table (time travel)."""
    return click.option(
        "--version",
        "version",
        type=click.IntRange(0),
        help="Read this version of the model's Delta table [default: the latest]; "
        "`featstore history` lists them. Needs --model when the store holds several.",
    )(func)


def where_option(help: str) -> Decorator[F]:
    """`--where SQL`: a predicate over the frames view."""
    return click.option("--where", metavar="SQL", help=help)


def input_dir_option(flag: str, help: str) -> Decorator[F]:
    """A required input folder (its existence is checked by the library, with a hint)."""
    return click.option(
        flag, required=True, type=click.Path(file_okay=False, path_type=Path), help=help
    )


def out_option(help: str) -> Decorator[F]:
    """`--out FILE` (required): what the command writes."""
    return click.option("--out", required=True, type=click.Path(path_type=Path), help=help)


def base_dir_option(help: str, flag: str = "--base-dir") -> Decorator[F]:
    """`--base-dir DIR`: what image paths are relative to."""
    return click.option(flag, type=click.Path(file_okay=False, path_type=Path), help=help)


def rebase_option(help: str) -> Decorator[F]:
    """`--rebase`: the images moved; accept a new base dir once the layout is checked."""
    return click.option("--rebase", is_flag=True, help=help)


def no_progress_option(help: str = "No progress bar.") -> Decorator[F]:
    return click.option("--no-progress", is_flag=True, help=help)


# The extraction settings `extract` and `filter-valid-images` share; the latter spells its
# flags the seed's way (`--batch_size`), hence the flag as an argument.


def batch_size_option(flag: str = "--batch-size") -> Decorator[F]:
    return click.option(
        flag,
        "batch_size",
        default=32,
        show_default=True,
        type=click.IntRange(1),
        help="Images per model batch.",
    )


def workers_option(func: F) -> F:
    return click.option(
        "--workers",
        type=click.IntRange(0),
        help="Decoding processes [default: one per spare core].",
    )(func)


def precision_option(func: F) -> F:
    return click.option(
        "--precision",
        type=click.Choice(["fp32", "bf16", "fp16"]),
        default="fp32",
        show_default=True,
        help="DINOv2 compute precision (fp16 needs CUDA).",
    )(func)


def detector_options(root_flag: str = "--insightface-root", tuning: bool = True) -> Decorator[F]:
    """`--insightface-root`, `--pack` (and with `tuning`, `--det-size`, `--det-thresh`),
    passed to the command as one `detector: DetectorSettings`."""
    options: list[Decorator[Any]] = [
        click.option(
            root_flag,
            "insightface_root",
            type=click.Path(file_okay=False, path_type=Path),
            default=Path("~/.insightface"),
            show_default=True,
            help="Folder holding models/<pack>/.",
        ),
        click.option(
            "--pack", default="buffalo_l", show_default=True, help="InsightFace model pack."
        ),
    ]
    if tuning:
        options += [
            click.option(
                "--det-size",
                default=640,
                show_default=True,
                type=click.IntRange(32),
                help="Detector input size.",
            ),
            click.option(
                "--det-thresh",
                default=0.5,
                show_default=True,
                type=click.FloatRange(0, 1),
                help="Detector score threshold.",
            ),
        ]

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def command(*args: Any, insightface_root: Path, pack: str, **kwargs: Any) -> Any:
            from featstore.extraction.detection import DetectorSettings

            tuned = {k: kwargs.pop(k) for k in ("det_size", "det_thresh") if k in kwargs}
            detector = DetectorSettings(root=insightface_root, pack=pack, **tuned)
            return func(*args, detector=detector, **kwargs)

        return option_group(*options)(command)

    return decorate


def engine_options(func: F) -> F:
    """`--engine` and the Ray flags, passed to the command as `engine` and
    `ray_options: RayOptions | None` (None when no Ray flag is given)."""

    @functools.wraps(func)
    def command(
        *args: Any,
        ray_address: str | None,
        gpus_per_worker: float | None,
        workers_per_node: int | None,
        **kwargs: Any,
    ) -> Any:
        ray_options = None
        if (ray_address, gpus_per_worker, workers_per_node) != (None, None, None):
            from featstore.extraction.ray_engine import RayOptions

            with usage_errors():
                ray_options = RayOptions(
                    address=ray_address,
                    gpus_per_worker=gpus_per_worker,
                    workers_per_node=workers_per_node,
                )
        return func(*args, ray_options=ray_options, **kwargs)

    return option_group(
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="local: this process; ray: actors on a Ray cluster "
            "(pip install 'featstore-faces[ray]').",
        ),
        click.option(
            "--ray-address",
            help="Ray cluster to use (e.g. auto, ray://head:10001) [default: RAY_ADDRESS, "
            "else a local one].",
        ),
        click.option(
            "--gpus-per-worker",
            type=click.FloatRange(0),
            help="GPUs per Ray worker [default: 1 if the cluster has GPUs, else 0].",
        ),
        click.option(
            "--workers-per-node",
            type=click.IntRange(1),
            help="Ray workers per node [default: one per --gpus-per-worker GPUs, or 1 on CPUs].",
        ),
    )(command)  # type: ignore[return-value]
