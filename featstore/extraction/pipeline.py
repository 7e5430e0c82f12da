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
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import featstore
from featstore.errors import InputError
from featstore.extraction import planning
from featstore.extraction.detection import DetectorSettings, FaceDetector, find_detector_file
from featstore.extraction.dinov2 import check_checkpoint
from featstore.extraction.embedding import PREPROCESSING, check_precision, resolve_model
from featstore.extraction.extractor import (
    ModelRef,
    RuntimeOptions,
    WorkerSpec,
    onnx_device,
)
from featstore.extraction.geometry import ANGLE_DEFINITION
from featstore.extraction.inputs import InputTree, scan_inputs
from featstore.extraction.local_engine import run_local, sigterm_interrupts
from featstore.extraction.options import Engine, ExtractOptions
from featstore.extraction.planning import row_schema
from featstore.extraction.pose import FACE000_POSE, SQPNP_POSE
from featstore.extraction.recognition import ArcFaceRef, is_arcface, resolve_arcface
from featstore.extraction.rows import NO_FACE, NO_POSE, OK, UNREADABLE
from featstore.extraction.stand_in import checkpoint_marker, onnx_marker
from featstore.extraction.summary import ExtractSummary, store_counts
from featstore.store.format import STAND_IN_KEY, stand_in_warning
from featstore.store.location import resolve_store
from featstore.store.query import StoreCounts

log = logging.getLogger(__name__)


def extract(
    face_dir: str | os.PathLike[str],
    video_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    options: ExtractOptions | None = None,
    **keywords: Any,
) -> ExtractSummary:
    """Extract features, landmarks, boxes and angles of every image into `store`.

    Resumable and idempotent: identities whose inputs and settings are unchanged are
    skipped, changed ones are redone, and each (model, identity) partition is replaced
    atomically, so a killed run followed by a rerun gives the same store.

        featstore.extract("data/face", "data/video", "store", models=["dinov2_vitb14"],
                          runtime=featstore.RuntimeOptions(batch_size=64))

    Args:
        face_dir: `<identity>.<ext>` frontal images.
        video_dir: `<identity>/<frame>.<ext>` video frames.
        store: the store folder (created if needed), or a URI such as `s3://bucket/prefix`
            (any filesystem pyarrow supports; see `featstore.store.location`).
        base_dir: stored paths are relative to it; default: the inputs' common parent.
        options: what to extract and how, as one object (default: the defaults).
        **keywords: the fields of `ExtractOptions`, each replacing that of `options`:
            models, weights, detector, runtime, overwrite, shard, engine, ray_options,
            limit, dry_run, rebase (`ExtractOptions` says what each means).

    Raises:
        InputError, StoreError, ProvenanceMismatchError, ModelNotFoundError, ModelLoadError.
        TypeError: a keyword that is not a field of `ExtractOptions`.
    """
    started = time.perf_counter()
    options = replace(options or ExtractOptions(), **keywords)
    face_path, video_path = Path(face_dir).absolute(), Path(video_dir).absolute()
    tree = scan_inputs(face_path, video_path)
    base = (
        Path(base_dir).absolute() if base_dir else Path(os.path.commonpath([face_path, video_path]))
    )
    return extract_inputs(tree, store, options, base_dir=base, started=started)


def extract_inputs(
    tree: InputTree,
    store: str | os.PathLike[str],
    options: ExtractOptions,
    *,
    base_dir: str | os.PathLike[str],
    started: float | None = None,
) -> ExtractSummary:
    """`extract` of identities listed by the caller instead of found by walking a tree.

    The Dataset uses it for old-format JSON files, whose paths need not follow the
    `<face-dir>/<identity>.<ext>` layout. Arguments as for `extract`; `started` is when
    the caller began (for the summary's timings).
    """
    started = time.perf_counter() if started is None else started
    options.check_shard_overwrite()
    if options.limit is not None:
        tree = tree.first(options.limit)
    with contextlib.ExitStack() as stack:
        ray = None
        if options.engine == "ray" and not options.dry_run:
            from featstore.extraction.ray_engine import RayOptions, ray_session

            ray_options = options.ray_options or RayOptions()
            options = replace(options, ray_options=ray_options)
            ray = stack.enter_context(ray_session(ray_options))
        return _extract(started, tree, store, options, base=Path(base_dir).absolute(), ray=ray)


def _extract(
    started: float,
    tree: InputTree,
    store: str | os.PathLike[str],
    options: ExtractOptions,
    *,
    base: Path,
    ray: ModuleType | None,
) -> ExtractSummary:
    """`extract` once the engine is ready (`ray`: the connected Ray module, or None)."""
    runtime, detector, dry_run = options.runtime, options.detector, options.dry_run
    engine: Engine = "local" if ray is None else "ray"
    if ray is not None:
        from featstore.extraction.ray_engine import worker_device

        assert options.ray_options is not None
        device = worker_device(ray, runtime.device, options.ray_options)
    else:
        device = runtime.device or _default_device()
    check_precision(runtime.precision, device)
    if options.shard is not None:
        tree = tree.shard(*options.shard)
    opened = planning.open_store(store, dry_run)
    display = opened.location if opened is not None else resolve_store(store)

    overrides = {name: Path(p) for name, p in (options.weights or {}).items()}
    refs = _resolve_models(options.models, overrides, detector)
    models = [ref.name for ref in refs]  # `arcface` is stored as arcface_<pack>
    if runtime.dinov2_source == "featstore":
        for ref in refs:  # every checkpoint fits its model before any work starts
            if not isinstance(ref, ArcFaceRef):
                check_checkpoint(ref.weights, ref.name)
    # The local engine loads its detector now: a pack that does not load fails before
    # the store is touched. Ray actors load theirs (and pick its device where they run);
    # the driver only finds the file, for the provenance.
    ort_device = onnx_device(device, runtime.device) if ray is None else None
    local_detector = FaceDetector(detector, device=ort_device or "cpu") if ray is None else None
    detector_file = local_detector.model_file if local_detector else find_detector_file(detector)
    provenance = {
        ref.name: _provenance(ref, detector_file, detector, runtime, base) for ref in refs
    }
    tables = {m: opened.table(m) for m in models} if opened is not None else {}
    if options.rebase:
        for m in models:
            if dry_run and (m not in tables or not tables[m].exists()):
                continue  # nothing stored yet: nothing to rebase
            planning.check_same_layout(tree, tables[m], base)
            if not dry_run:
                old = tables[m].rebase(provenance[m])
                if old is not None:
                    log.info("%s: base dir %s -> %s, rows kept", m, old, base.as_posix())
    if dry_run:
        for ref in refs:
            table = tables.get(ref.name)
            planning.would_refuse(
                table, provenance[ref.name], options.overwrite, rebase=options.rebase
            )
    else:
        for ref in refs:
            schema = row_schema(ref.dim)
            tables[ref.name].claim(provenance[ref.name], schema, overwrite=options.overwrite)
    done = {m: planning.done(tables.get(m), options.overwrite) for m in models}
    plan = planning.plan(tree, models, done)
    images = sum(len(job.tasks()) for job in plan)
    log.info("%d identities to extract, %d up to date", len(plan), len(tree.identities) - len(plan))

    counts = {OK: 0, NO_FACE: 0, UNREADABLE: 0, NO_POSE: 0}
    timings = {"setup_s": time.perf_counter() - started, "processing_s": 0.0}
    providers = list(local_detector.providers) if local_detector else []
    if plan and not dry_run:
        assert opened is not None
        spec = WorkerSpec(
            refs=refs,
            detector=detector,
            device=device,
            onnx_device=ort_device,
            runtime=runtime,
            store=opened.location,
            base_dir=base,
            provenance=provenance,
            extracted_at=datetime.now(timezone.utc),
            commit_identities=1 if ray is not None else runtime.commit_identities,
        )
        if ray is not None:
            from featstore.extraction.ray_engine import run_on_ray

            assert options.ray_options is not None
            ray_run = run_on_ray(ray, plan, spec, options.ray_options, counts)
            providers, timings = ray_run.providers, {**timings, **ray_run.timings}
        else:
            assert local_detector is not None
            with sigterm_interrupts():
                timings.update(run_local(plan, spec, local_detector, counts))
        compacted = [m for m in models if planning.compact_if_fragmented(tables[m])]
        if compacted:
            log.info("compacted the tables of %s", ", ".join(compacted))
    elapsed = time.perf_counter() - started
    return ExtractSummary(
        store=display.local or display.display,
        models=tuple(models),
        device=device,
        detector_providers=tuple(providers),
        identities_in_input=len(tree.identities),
        identities_extracted=len(plan),
        images_extracted=images,
        without_pose=counts.pop(NO_POSE, 0),
        run_counts=counts,
        face_without_video=tuple(tree.face_without_video),
        video_without_face=tuple(tree.video_without_face),
        ambiguous_faces=tuple(tree.ambiguous_faces),
        ignored_files=tree.ignored_files,
        skipped_entries=tuple(tree.skipped_entries),
        skipped_inputs=tuple(tree.skipped),
        warnings=tuple(tree.warnings),
        without_inputs=planning.without_inputs(tree, done) if options.shard is None else (),
        elapsed_s=elapsed,
        timings=timings,
        store_counts={  # a dry run wrote nothing: the store's counts are not this run's
            m: StoreCounts() if opened is None or dry_run else store_counts(opened, m)
            for m in models
        },
        shard=options.shard,
        engine=engine,
        dry_run=dry_run,
        model_files=tuple(
            f"{ref.name}: {ref.model_file if isinstance(ref, ArcFaceRef) else ref.weights}"
            for ref in refs
        )
        + (f"detector: {detector_file}",),
        limit=options.limit,
        stand_in=tuple(w for m in models if (w := stand_in_warning(provenance[m]))),
    )


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

    provenance = {
        **_model_provenance(ref, runtime),
        "angle_definition": ANGLE_DEFINITION,
        # Both head poses (featstore.extraction.pose), each under its own key.
        **{d.provenance_key: d.name for d in (FACE000_POSE, SQPNP_POSE)},
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
    marks = {
        "detector": onnx_marker(detector_file),
        ref.name: onnx_marker(ref.model_file)
        if isinstance(ref, ArcFaceRef)
        else checkpoint_marker(ref.weights),
    }
    if any(marks.values()):
        provenance[STAND_IN_KEY] = {what: why for what, why in marks.items() if why}
    return provenance
