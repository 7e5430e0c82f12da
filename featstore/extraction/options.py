"""`ExtractOptions`: everything an extraction run is asked to do, declared once.

`featstore.extract` takes these as keywords (or as one object), the command line and the
Dataset build one, and the pipeline reads it: no option list is copied down the stack. The
object checks its options when it is made, so a bad combination fails before any work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from featstore.errors import InputError
from featstore.extraction.detection import DetectorSettings
from featstore.extraction.dinov2_specs import DEFAULT_MODEL
from featstore.extraction.extractor import RuntimeOptions
from featstore.extraction.inputs import check_shard

if TYPE_CHECKING:
    from featstore.extraction.ray_engine import RayOptions

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class ExtractOptions:
    """What to extract and how: the keywords of `featstore.extract`.

    Args:
        models: DINOv2 models, and `arcface` (the pack's recognition model, stored as
            `arcface_<pack>`), to run; images are decoded and detected once for all.
            Repeats are dropped; kept as a tuple.
        weights: per-model checkpoint paths overriding the lookup (docs/formats.md).
        detector: InsightFace pack and settings (None: the defaults).
        runtime: device, batch size, workers, precision, progress bar (None: the defaults).
        overwrite: redo every identity, replacing rows made with other settings.
        shard: `(i, n)`: extract only the identities whose name hashes to shard `i` of `n`,
            so `n` independent processes fill one store. Not with `overwrite`.
        engine: "local" (this process) or "ray" (actors on a Ray cluster, `ray_options`).
        ray_options: where the Ray cluster is and how to place workers (engine "ray").
        limit: only the first `limit` identities by name (try a few before a long run).
        dry_run: check the inputs, every model and the store's settings, and say what
            would be extracted, without loading DINOv2 or writing anything.
        rebase: the images moved (the same folders under a new base dir): record the new
            base dir and keep the rows of unchanged identities instead of refusing.

    Raises:
        InputError: an unknown engine, Ray options without the Ray engine, a bad shard, or
            no model.
    """

    models: Sequence[str] = (DEFAULT_MODEL,)
    weights: Mapping[str, str | os.PathLike[str]] | None = None
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    overwrite: bool = False
    shard: tuple[int, int] | None = None
    engine: Engine = "local"
    ray_options: RayOptions | None = None
    limit: int | None = None
    dry_run: bool = False
    rebase: bool = False

    def __post_init__(self) -> None:
        models = [self.models] if isinstance(self.models, str) else self.models
        object.__setattr__(self, "models", tuple(dict.fromkeys(models)))
        # Python callers pass None for "the defaults" (the Dataset forwards its own None).
        if self.detector is None:
            object.__setattr__(self, "detector", DetectorSettings())
        if self.runtime is None:
            object.__setattr__(self, "runtime", RuntimeOptions())
        if not self.models:
            raise InputError("no --model given; name at least one DINOv2 model.")
        if self.engine not in ENGINES:
            raise InputError(f"--engine {self.engine!r}: choose one of {', '.join(ENGINES)}.")
        if self.ray_options is not None and self.engine != "ray":
            raise InputError(
                "Ray options (--ray-address, --gpus-per-worker, --workers-per-node) need "
                "--engine ray."
            )
        if self.shard is not None:
            check_shard(*self.shard)

    def check_shard_overwrite(self) -> None:
        """`overwrite` with `shard` would lose the rows of the other shards: refused."""
        if self.shard is not None and self.overwrite:
            raise InputError(
                "--overwrite cannot be combined with --shard: it moves the model's rows aside "
                "while other shards are writing theirs, which would lose them.\n"
                "Hint: run one `featstore extract --overwrite` first (or delete the model's "
                "folder, or use a new --store), then start the shards without --overwrite."
            )
