"""`extract`: the input tree in, the store out.

Scans the inputs, resolves the models, checks each model's provenance against the store,
plans which identities need work, and hands the plan to an engine: the local one
(`featstore.extraction.local_engine`) or Ray (`featstore.extraction.ray_engine`). Both run
`featstore.extraction.extractor.Extractor`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import featstore
from featstore.errors import InputError
from featstore.extraction.detection import DetectorSettings, FaceDetector, find_detector_file
from featstore.extraction.dinov2_specs import DEFAULT_MODEL
from featstore.extraction.embedding import PREPROCESSING, check_precision, resolve_model
from featstore.extraction.extractor import (
    IdentityJob,
    ModelRef,
    RuntimeOptions,
    WorkerSpec,
    onnx_device,
)
from featstore.extraction.geometry import ANGLE_DEFINITION
from featstore.extraction.inputs import IdentityInputs, InputTree, check_shard, scan_inputs
from featstore.extraction.local_engine import run_local
from featstore.extraction.recognition import ArcFaceRef, is_arcface, resolve_arcface
from featstore.extraction.rows import NO_FACE, OK, UNREADABLE
from featstore.extraction.summary import ExtractSummary, store_counts
from featstore.store.layout import (
    check_claim,
    claim_model,
    encode_segment,
    open_store,
    partition_is_current,
    present_identities,
    remove_stale_temporaries,
)
from featstore.store.location import StoreLocation, resolve_store

if TYPE_CHECKING:
    from featstore.extraction.ray_engine import RayOptions

log = logging.getLogger(__name__)
_REMOTE_PLAN_THREADS = 16  # footers read at once when planning against object storage

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")


def extract(
    face_dir: str | os.PathLike[str],
    video_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    *,
    models: Sequence[str] = (DEFAULT_MODEL,),
    weights: Mapping[str, str | os.PathLike[str]] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    detector: DetectorSettings | None = None,
    runtime: RuntimeOptions | None = None,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    engine: Engine = "local",
    ray_options: RayOptions | None = None,
) -> ExtractSummary:
    """Extract features, landmarks, boxes and angles of every image into `store`.

    Resumable and idempotent: identities whose inputs and settings are unchanged are
    skipped, changed ones are redone, and each (model, identity) partition is replaced
    atomically, so a killed run followed by a rerun gives the same store.

    Args:
        face_dir: `<identity>.<ext>` frontal images.
        video_dir: `<identity>/<frame>.<ext>` video frames.
        store: the store folder (created if needed), or a URI such as `s3://bucket/prefix`
            (any filesystem pyarrow supports; see `featstore.store.location`).
        models: DINOv2 models, and `arcface` (the pack's recognition model, stored as
            `arcface_<pack>`), to run; images are decoded and detected once for all.
        weights: per-model checkpoint paths overriding the lookup of SPEC §5.
        base_dir: stored paths are relative to it; default: the inputs' common parent.
        detector: InsightFace pack and settings.
        runtime: device, batch size, workers, precision, progress bar.
        overwrite: redo every identity, replacing rows made with other settings.
        shard: `(i, n)`: extract only the identities whose name hashes to shard `i` of `n`,
            so `n` independent processes fill one store. Not with `overwrite`.
        engine: "local" (this process) or "ray" (actors on a Ray cluster, `ray_options`).
        ray_options: where the Ray cluster is and how to place workers (engine "ray").

    Raises:
        InputError, StoreError, ProvenanceMismatchError, ModelNotFoundError, ModelLoadError.
    """
    started = time.perf_counter()
    face_path, video_path = Path(face_dir).absolute(), Path(video_dir).absolute()
    tree = scan_inputs(face_path, video_path)
    base = (
        Path(base_dir).absolute() if base_dir else Path(os.path.commonpath([face_path, video_path]))
    )
    return extract_inputs(
        tree,
        store,
        base_dir=base,
        models=models,
        weights=weights,
        detector=detector,
        runtime=runtime,
        overwrite=overwrite,
        started=started,
        shard=shard,
        engine=engine,
        ray_options=ray_options,
    )


def extract_inputs(
    tree: InputTree,
    store: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str],
    models: Sequence[str] = (DEFAULT_MODEL,),
    weights: Mapping[str, str | os.PathLike[str]] | None = None,
    detector: DetectorSettings | None = None,
    runtime: RuntimeOptions | None = None,
    overwrite: bool = False,
    started: float | None = None,
    shard: tuple[int, int] | None = None,
    engine: Engine = "local",
    ray_options: RayOptions | None = None,
) -> ExtractSummary:
    """`extract` of identities listed by the caller instead of found by walking a tree.

    The Dataset uses it for old-format JSON files, whose paths need not follow the
    `<face-dir>/<identity>.<ext>` layout. Arguments as for `extract`; `started` is when
    the caller began (for the summary's timings).
    """
    started = time.perf_counter() if started is None else started
    _check_engine(engine, ray_options, shard, overwrite)
    with contextlib.ExitStack() as stack:
        ray = None
        if engine == "ray":
            from featstore.extraction.ray_engine import RayOptions, ray_session

            ray_options = ray_options or RayOptions()
            ray = stack.enter_context(ray_session(ray_options))
        return _extract(
            started,
            tree,
            store,
            base=Path(base_dir).absolute(),
            models=_unique_models(models),
            weights=weights,
            detector=detector or DetectorSettings(),
            runtime=runtime or RuntimeOptions(),
            overwrite=overwrite,
            shard=shard,
            ray=ray,
            ray_options=ray_options,
        )


def _extract(
    started: float,
    tree: InputTree,
    store: str | os.PathLike[str],
    *,
    base: Path,
    models: list[str],
    weights: Mapping[str, str | os.PathLike[str]] | None,
    detector: DetectorSettings,
    runtime: RuntimeOptions,
    overwrite: bool,
    shard: tuple[int, int] | None,
    ray: ModuleType | None,
    ray_options: RayOptions | None,
) -> ExtractSummary:
    """`extract` once the engine is ready (`ray`: the connected Ray module, or None)."""
    engine: Engine = "local" if ray is None else "ray"
    if ray is not None:
        from featstore.extraction.ray_engine import worker_device

        assert ray_options is not None
        device = worker_device(ray, runtime.device, ray_options)
    else:
        device = runtime.device or _default_device()
    check_precision(runtime.precision, device)
    if runtime.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {runtime.batch_size}.")
    if shard is not None:
        tree = tree.shard(*shard)
    location = open_store(resolve_store(store))
    remove_stale_temporaries(location)

    overrides = {name: Path(p) for name, p in (weights or {}).items()}
    refs = _resolve_models(models, overrides, detector)
    models = [ref.name for ref in refs]  # `arcface` is stored as arcface_<pack>
    # The local engine loads its detector now: a pack that does not load fails before
    # the store is touched. Ray actors load theirs (and pick its device where they run);
    # the driver only finds the file, for the provenance.
    ort_device = onnx_device(device, runtime.device) if ray is None else None
    local_detector = FaceDetector(detector, device=ort_device or "cpu") if ray is None else None
    detector_file = local_detector.model_file if local_detector else find_detector_file(detector)
    provenance = {
        ref.name: _provenance(ref, detector_file, detector, runtime, base) for ref in refs
    }
    discarded = {m: claim_model(location, m, provenance[m], overwrite=overwrite) for m in models}
    plan = _plan(tree, location, models, provenance, force=overwrite, discarded=discarded)
    images = sum(len(job.tasks()) for job in plan)
    log.info("%d identities to extract, %d up to date", len(plan), len(tree.identities) - len(plan))

    counts = {OK: 0, NO_FACE: 0, UNREADABLE: 0}
    timings = {"setup_s": time.perf_counter() - started, "processing_s": 0.0}
    providers = list(local_detector.providers) if local_detector else []
    if plan:
        spec = WorkerSpec(
            refs=refs,
            detector=detector,
            device=device,
            onnx_device=ort_device,
            runtime=runtime,
            store=location,
            base_dir=base,
            provenance=provenance,
            extracted_at=datetime.now(timezone.utc),
        )
        if ray is not None:
            from featstore.extraction.ray_engine import run_on_ray

            assert ray_options is not None
            done = run_on_ray(ray, plan, spec, ray_options, counts)
            providers, timings = done.providers, {**timings, **done.timings}
        else:
            assert local_detector is not None
            timings.update(run_local(plan, spec, local_detector, counts))
        for m in models:  # a concurrent run (another shard) that claimed differently
            check_claim(location, m, provenance[m])
    elapsed = time.perf_counter() - started
    return ExtractSummary(
        store=location.local or location.display,
        models=tuple(models),
        device=device,
        detector_providers=tuple(providers),
        identities_in_input=len(tree.identities),
        identities_extracted=len(plan),
        images_extracted=images,
        run_counts=counts,
        face_without_video=tuple(tree.face_without_video),
        video_without_face=tuple(tree.video_without_face),
        ambiguous_faces=tuple(tree.ambiguous_faces),
        ignored_files=tree.ignored_files,
        elapsed_s=elapsed,
        timings=timings,
        store_counts={m: store_counts(location, m) for m in models},
        shard=shard,
        engine=engine,
    )


def _check_engine(
    engine: str, ray_options: RayOptions | None, shard: tuple[int, int] | None, overwrite: bool
) -> None:
    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}.")
    if ray_options is not None and engine != "ray":
        raise InputError("Ray options (--ray-address, --gpus-per-worker, ...) need --engine ray.")
    if shard is not None:
        check_shard(*shard)
        if overwrite:
            raise InputError(
                "--overwrite cannot be combined with --shard: it moves the model's rows aside "
                "while other shards are writing theirs, which would lose them.\n"
                "Hint: run one `featstore extract --overwrite` first (or delete the model's "
                "folder, or use a new --store), then start the shards without --overwrite."
            )


def _unique_models(models: Sequence[str]) -> list[str]:
    if isinstance(models, str):
        models = [models]
    unique = list(dict.fromkeys(models))
    if not unique:
        raise InputError("no --model given; name at least one DINOv2 model.")
    return unique


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_models(
    models: Sequence[str], overrides: Mapping[str, Path], detector: DetectorSettings
) -> tuple[ModelRef, ...]:
    """Each model found (and checksummed) before anything heavy loads; arcface once."""
    refs: dict[str, ModelRef] = {}
    for name in models:
        if not is_arcface(name):
            ref: ModelRef = resolve_model(name, overrides.get(name))
        elif name in overrides:
            raise InputError(
                f"--weights {name}=...: the ArcFace model comes from the InsightFace pack.\n"
                "Hint: choose it with --insightface-root and --pack."
            )
        else:
            ref = resolve_arcface(name, detector)
        refs.setdefault(ref.name, ref)
    return tuple(refs.values())


def _model_provenance(ref: ModelRef, runtime: RuntimeOptions) -> dict[str, Any]:
    """What makes a model's numbers: its weights and how its input is prepared."""
    if isinstance(ref, ArcFaceRef):
        from featstore.extraction.recognition import PREPROCESSING as ARCFACE_PREPROCESSING

        return {
            "model": ref.name,
            "feature_dim": ref.dim,
            "weights_sha256": ref.weights_sha256,
            "precision": "fp32",  # onnxruntime runs the model as exported
            "preprocessing": ARCFACE_PREPROCESSING,
            "recognition": {
                "pack": ref.pack,
                "model_file": ref.model_file.name,
                "model_sha256": ref.weights_sha256,
                "input_size": ref.input_size,
            },
        }
    return {
        "model": ref.name,
        "feature_dim": ref.dim,
        "weights_sha256": ref.weights_sha256,
        "dinov2_implementation": runtime.dinov2_source,
        "precision": runtime.precision,
        "preprocessing": PREPROCESSING,
    }


def _provenance(
    ref: ModelRef,
    detector_file: Path,
    settings: DetectorSettings,
    runtime: RuntimeOptions,
    base_dir: Path,
) -> dict[str, Any]:
    from featstore.extraction.weights import file_sha256

    return {
        **_model_provenance(ref, runtime),
        "angle_definition": ANGLE_DEFINITION,
        "detector": {
            "pack": settings.pack,
            "model_file": detector_file.name,
            "model_sha256": file_sha256(detector_file),
            "det_size": settings.det_size,
            "det_thresh": settings.det_thresh,
            "keep": "highest-score face",
        },
        "base_dir": base_dir.as_posix(),
        "featstore_version": featstore.__version__,
    }


def _plan(
    tree: InputTree,
    store: StoreLocation,
    models: Sequence[str],
    provenance: Mapping[str, Mapping[str, Any]],
    *,
    force: bool,
    discarded: Mapping[str, bool],
) -> list[IdentityJob]:
    # One listing per model, then a footer read only where a partition exists (on object
    # storage a missing object would cost a request each, and footers are read in parallel).
    present = {m: set() if force or discarded[m] else present_identities(store, m) for m in models}

    def job(inputs: IdentityInputs) -> IdentityJob | None:
        if inputs.face is None and not inputs.frames:
            return None  # an empty video folder without a frontal image: nothing to store
        fingerprint = inputs.fingerprint()
        folder = f"identity={encode_segment(inputs.identity)}"
        needed = tuple(
            m
            for m in models
            if folder not in present[m]
            or not partition_is_current(store, m, inputs.identity, fingerprint, provenance[m])
        )
        return IdentityJob(inputs, fingerprint, needed) if needed else None

    if store.local is not None:
        jobs = [job(inputs) for inputs in tree.identities]
    else:
        with ThreadPoolExecutor(_REMOTE_PLAN_THREADS, thread_name_prefix="featstore-plan") as pool:
            jobs = list(pool.map(job, tree.identities))
    return [j for j in jobs if j is not None]
