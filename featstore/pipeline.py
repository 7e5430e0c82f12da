"""`extract`: the input tree in, the store out, as a pipeline.

    DataLoader workers        main thread                         writer thread
    decode, resize, letterbox -> detect (batch) -> DINOv2 (batch) -> rows + angles -> Parquet
    (prefetching batches)        per model, faces only                 one identity at a time

The models never wait on file I/O: decoding runs ahead in worker processes and
writing happens behind, in a thread (pyarrow releases the GIL while writing).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import featstore
from featstore.decoding import DecodeDataset, DecodedBatch, ImageTask, collate, init_worker
from featstore.detection import DetectorSettings, FaceDetector
from featstore.dinov2_specs import DEFAULT_MODEL
from featstore.embedding import (
    PREPROCESSING,
    DinoEmbedder,
    DinoModelRef,
    DinoSource,
    Precision,
    check_precision,
    resolve_model,
)
from featstore.errors import FeatstoreError, InputError
from featstore.geometry import ANGLE_DEFINITION
from featstore.inputs import IdentityInputs, InputTree, scan_inputs
from featstore.rows import NO_FACE, OK, UNREADABLE, ImageResult, identity_table
from featstore.store import (
    claim_model,
    open_store,
    partition_is_current,
    remove_stale_temporaries,
    write_partition,
)
from featstore.summary import ExtractSummary, store_counts

log = logging.getLogger(__name__)
_MAX_PENDING_WRITES = 64  # identities queued for the writer before the models wait


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run (none of it changes the numbers, except precision)."""

    device: str | None = None  # None: "cuda" when torch sees a GPU, else "cpu"
    batch_size: int = 32
    workers: int | None = None  # decoding processes; None: one per spare core
    precision: Precision = "fp32"
    dinov2_source: DinoSource = "featstore"
    progress: bool = True


@dataclass
class _Pending:
    """An identity in flight: its results fill up as batches come back."""

    inputs: IdentityInputs
    fingerprint: str  # taken when planned: a file changed mid-run is redone next run
    models: tuple[str, ...]
    results: list[ImageResult | None]
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.remaining = len(self.results)


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
) -> ExtractSummary:
    """Extract features, landmarks, boxes and angles of every image into `store`.

    Resumable and idempotent: identities whose inputs and settings are unchanged are
    skipped, changed ones are redone, and each (model, identity) partition is replaced
    atomically, so a killed run followed by a rerun gives the same store.

    Args:
        face_dir: `<identity>.<ext>` frontal images.
        video_dir: `<identity>/<frame>.<ext>` video frames.
        store: the store folder (created if needed).
        models: DINOv2 models to run; images are decoded and detected once for all.
        weights: per-model checkpoint paths overriding the lookup of SPEC §5.
        base_dir: stored paths are relative to it; default: the inputs' common parent.
        detector: InsightFace pack and settings.
        runtime: device, batch size, workers, precision, progress bar.
        overwrite: redo every identity, replacing rows made with other settings.

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
) -> ExtractSummary:
    """`extract` of identities listed by the caller instead of found by walking a tree.

    The Dataset uses it for old-format JSON files, whose paths need not follow the
    `<face-dir>/<identity>.<ext>` layout. Arguments as for `extract`; `started` is when
    the caller began (for the summary's timings).
    """
    started = time.perf_counter() if started is None else started
    runtime = runtime or RuntimeOptions()
    detector = detector or DetectorSettings()
    models = _unique_models(models)
    device = runtime.device or _default_device()
    check_precision(runtime.precision, device)
    if runtime.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {runtime.batch_size}.")
    base = Path(base_dir).absolute()
    store_path = open_store(Path(store))
    remove_stale_temporaries(store_path)

    overrides = {name: Path(p) for name, p in (weights or {}).items()}
    refs = [resolve_model(name, overrides.get(name)) for name in models]
    detector_runner = FaceDetector(detector, device=_onnx_device(device, runtime.device))
    provenance = {
        ref.name: _provenance(ref, detector_runner, detector, runtime, base) for ref in refs
    }
    discarded = {m: claim_model(store_path, m, provenance[m], overwrite=overwrite) for m in models}
    plan = _plan(tree, store_path, models, provenance, force=overwrite, discarded=discarded)
    tasks = [task for pending in plan for task in _tasks(pending.inputs)]
    log.info("%d identities to extract, %d up to date", len(plan), len(tree.identities) - len(plan))

    counts = {OK: 0, NO_FACE: 0, UNREADABLE: 0}
    timings = {"setup_s": time.perf_counter() - started, "processing_s": 0.0}
    if tasks:
        context = _RunContext(detector_runner, store_path, base, provenance, runtime, device)
        timings.update(_run(tasks, plan, refs, context, counts))
    elapsed = time.perf_counter() - started
    return ExtractSummary(
        store=store_path,
        models=tuple(models),
        device=device,
        detector_providers=tuple(detector_runner.providers),
        identities_in_input=len(tree.identities),
        identities_extracted=len(plan),
        images_extracted=len(tasks),
        run_counts=counts,
        face_without_video=tuple(tree.face_without_video),
        video_without_face=tuple(tree.video_without_face),
        ambiguous_faces=tuple(tree.ambiguous_faces),
        ignored_files=tree.ignored_files,
        elapsed_s=elapsed,
        timings=timings,
        store_counts={m: store_counts(store_path, m) for m in models},
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


def _onnx_device(device: str, requested: str | None) -> str:
    """The detector follows the torch device; on auto, fall back loudly if ORT lacks CUDA."""
    import onnxruntime

    auto_cuda = device.startswith("cuda") and requested is None
    if auto_cuda and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        log.warning(
            "torch sees a GPU but onnxruntime has no CUDA provider: the detector runs on "
            "the CPU. Install onnxruntime-gpu (featstore[gpu]) to detect on the GPU."
        )
        return "cpu"
    return device


def _provenance(
    ref: DinoModelRef,
    runner: FaceDetector,
    settings: DetectorSettings,
    runtime: RuntimeOptions,
    base_dir: Path,
) -> dict[str, Any]:
    from featstore.weights import file_sha256

    return {
        "model": ref.name,
        "feature_dim": ref.dim,
        "weights_sha256": ref.weights_sha256,
        "dinov2_implementation": runtime.dinov2_source,
        "precision": runtime.precision,
        "preprocessing": PREPROCESSING,
        "angle_definition": ANGLE_DEFINITION,
        "detector": {
            "pack": settings.pack,
            "model_file": runner.model_file.name,
            "model_sha256": file_sha256(runner.model_file),
            "det_size": settings.det_size,
            "det_thresh": settings.det_thresh,
            "keep": "highest-score face",
        },
        "base_dir": base_dir.as_posix(),
        "featstore_version": featstore.__version__,
    }


def _plan(
    tree: InputTree,
    store: Path,
    models: Sequence[str],
    provenance: Mapping[str, Mapping[str, Any]],
    *,
    force: bool,
    discarded: Mapping[str, bool],
) -> list[_Pending]:
    plan = []
    for inputs in tree.identities:
        if inputs.face is None and not inputs.frames:
            continue  # an empty video folder without a frontal image: nothing to store
        fingerprint = inputs.fingerprint()
        needed = tuple(
            m
            for m in models
            if force
            or discarded[m]
            or not partition_is_current(store, m, inputs.identity, fingerprint, provenance[m])
        )
        if needed:
            size = (1 if inputs.face else 0) + len(inputs.frames)
            plan.append(_Pending(inputs, fingerprint, needed, [None] * size))
    return plan


def _tasks(inputs: IdentityInputs) -> Iterable[ImageTask]:
    if inputs.face is not None:
        yield ImageTask(inputs.identity, "face", inputs.face, None)
    for index, frame in enumerate(inputs.frames):
        yield ImageTask(inputs.identity, "frame", frame, index)


@dataclass(frozen=True)
class _RunContext:
    """What every batch and every write of one run needs."""

    detector: FaceDetector
    store: Path
    base_dir: Path
    provenance: Mapping[str, Mapping[str, Any]]
    runtime: RuntimeOptions
    device: str


def _run(
    tasks: list[ImageTask],
    plan: list[_Pending],
    refs: Sequence[DinoModelRef],
    ctx: _RunContext,
    counts: dict[str, int],
) -> dict[str, float]:
    """Decode, detect, embed and write `tasks`; returns the time spent by phase."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    started = time.perf_counter()
    runtime, detector = ctx.runtime, ctx.detector
    workers = (
        runtime.workers
        if runtime.workers is not None
        else max(1, min(8, (os.cpu_count() or 2) - 1))
    )
    loader = DataLoader(
        DecodeDataset(tasks, detector.settings.det_size),
        batch_size=runtime.batch_size,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=init_worker if workers else None,
        pin_memory=ctx.device.startswith("cuda"),
        prefetch_factor=4 if workers else None,
        # Never fork: a process that already ran OpenCV or OpenMP thread pools (a notebook
        # that extracted before, a caller that decoded images) deadlocks its forked children.
        multiprocessing_context=_worker_start_method() if workers else None,
    )
    # Workers start now and decode ahead while the DINOv2 weights load.
    batches = iter(loader)
    embedders = {
        ref.name: DinoEmbedder(
            ref, device=ctx.device, precision=runtime.precision, source=runtime.dinov2_source
        )
        for ref in refs
    }
    loaded = time.perf_counter()
    # Each task's slot in its identity's result list, in task order.
    slots = [(pending, i) for pending in plan for i in range(len(pending.results))]
    extracted_at = datetime.now(timezone.utc)
    writes: list[Future[None]] = []

    def write(pending: _Pending) -> None:
        results = [r for r in pending.results if r is not None]
        for model in pending.models:
            table = identity_table(
                results,
                model=model,
                dim=embedders[model].ref.dim,
                base_dir=ctx.base_dir,
                extracted_at=extracted_at,
            )
            write_partition(
                ctx.store,
                model,
                pending.inputs.identity,
                table,
                fingerprint=pending.fingerprint,
                provenance=ctx.provenance[model],
            )

    bar = tqdm(total=len(tasks), unit="img", disable=not runtime.progress, dynamic_ncols=True)
    position = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="featstore-writer") as writer:
        try:
            for batch in _batches(batches):
                results = _process_batch(batch, detector, embedders, slots, position)
                for result in results:
                    pending, slot = slots[position]
                    pending.results[slot] = result
                    pending.remaining -= 1
                    counts[result.status] += 1
                    position += 1
                    if pending.remaining == 0:
                        writes.append(writer.submit(write, pending))
                bar.update(len(results))
                writes = _drain(writes, keep=_MAX_PENDING_WRITES)
            _drain(writes, keep=0)
        finally:
            bar.close()
    return {"models_s": loaded - started, "processing_s": time.perf_counter() - loaded}


def _batches(loader: Iterable[DecodedBatch]) -> Iterable[DecodedBatch]:
    try:
        yield from loader
    except RuntimeError as exc:
        if "DataLoader worker" not in str(exc):
            raise
        raise FeatstoreError(
            f"a decoding worker process died: {exc}\nHint: workers are started fresh (not "
            "forked), so a script that calls featstore.extract must keep its top-level code "
            'under `if __name__ == "__main__":`; or pass workers=0 / --workers 0.'
        ) from exc


def _worker_start_method() -> str:
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def _drain(writes: list[Future[None]], *, keep: int) -> list[Future[None]]:
    """Surface writer errors now, and keep at most `keep` writes queued."""
    done = [f for f in writes if f.done()]
    for f in done:
        f.result()  # re-raises a StoreError from the writer thread
    writes = [f for f in writes if not f.done()]
    while len(writes) > keep:
        writes.pop(0).result()
    return writes


def _process_batch(
    batch: DecodedBatch,
    detector: FaceDetector,
    embedders: Mapping[str, DinoEmbedder],
    slots: Sequence[tuple[_Pending, int]],
    start: int,
) -> list[ImageResult]:
    results = [
        ImageResult(
            task=info.task,
            status=UNREADABLE if info.error else NO_FACE,
            error=info.error,
            width=info.width or None,
            height=info.height or None,
            file_size=info.file_size,
        )
        for info in batch.images
    ]
    scales = np.array([batch.images[i].det_scale for i in batch.decoded])
    detections = detector.detect(batch.det_blobs.numpy(), scales)
    with_face: list[int] = []  # rows of batch.pixels whose image has a face
    for row, (position, detection) in enumerate(zip(batch.decoded, detections, strict=True)):
        result = results[position]
        if detection is None:
            result.error = f"no face found at det_thresh {detector.settings.det_thresh}"
        else:
            result.status, result.detection = OK, detection
            with_face.append(row)
    for name, embedder in embedders.items():
        rows = [r for r in with_face if name in slots[start + batch.decoded[r]][0].models]
        if not rows:
            continue
        features = embedder.embed(batch.pixels[rows])
        for row, vector in zip(rows, features, strict=True):
            results[batch.decoded[row]].features[name] = vector
    return results
