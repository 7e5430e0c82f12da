"""`extract`: the input tree in, the store out, as a pipeline.

    DataLoader workers        main thread                         writer thread
    decode, resize, letterbox -> detect (batch) -> DINOv2 (batch) -> rows + angles -> Parquet
    (prefetching batches)        per model, faces only                 one identity at a time

The models never wait on file I/O: decoding runs ahead in worker processes and
writing happens behind, in a thread (pyarrow releases the GIL while writing).

Both engines share `Extractor`: the models of one process, turning decoded batches into
results (`process_batch`) and an identity's results into its partitions (`write`). The
local engine streams batches across identities through one `Extractor`; the Ray engine
(`featstore.ray_engine`) gives each actor its own and sends it whole identities
(`Extractor.extract_identity`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

import featstore
from featstore.decoding import DecodeDataset, DecodedBatch, ImageTask, collate, init_worker
from featstore.detection import DetectorSettings, FaceDetector, find_detector_file
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
from featstore.inputs import IdentityInputs, InputTree, check_shard, scan_inputs
from featstore.rows import NO_FACE, OK, UNREADABLE, ImageResult, identity_table
from featstore.storage import StoreLocation, resolve_store
from featstore.store import (
    check_claim,
    claim_model,
    encode_segment,
    open_store,
    partition_is_current,
    present_identities,
    remove_stale_temporaries,
    write_partition,
)
from featstore.summary import ExtractSummary, store_counts

if TYPE_CHECKING:
    from featstore.ray_engine import RayOptions

log = logging.getLogger(__name__)
_MAX_PENDING_WRITES = 64  # identities queued for the writer before the models wait
_REMOTE_PLAN_THREADS = 16  # footers read at once when planning against object storage

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run (none of it changes the numbers, except precision)."""

    device: str | None = None  # None: "cuda" when torch sees a GPU, else "cpu"
    batch_size: int = 32
    workers: int | None = None  # decoding processes; None: one per spare core
    precision: Precision = "fp32"
    dinov2_source: DinoSource = "featstore"
    progress: bool = True


@dataclass(frozen=True)
class IdentityJob:
    """One identity to extract: the unit of work of both engines."""

    inputs: IdentityInputs
    fingerprint: str  # taken when planned: a file changed mid-run is redone next run
    models: tuple[str, ...]  # the models whose partition is missing or stale

    def tasks(self) -> list[ImageTask]:
        return list(_tasks(self.inputs))


@dataclass
class _Pending:
    """An identity in flight in the local engine: its results fill up as batches come back."""

    job: IdentityJob
    results: list[ImageResult | None]
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.remaining = len(self.results)


@dataclass(frozen=True)
class WorkerSpec:
    """What a process needs to extract identities into the store (picklable, for Ray)."""

    refs: tuple[DinoModelRef, ...]
    detector: DetectorSettings
    device: str  # torch device
    onnx_device: str | None  # the detector's device; None: decided where it loads
    runtime: RuntimeOptions
    store: StoreLocation
    base_dir: Path
    provenance: Mapping[str, Mapping[str, Any]]
    extracted_at: datetime


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
            (any filesystem pyarrow supports; see `featstore.storage`).
        models: DINOv2 models to run; images are decoded and detected once for all.
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
            from featstore.ray_engine import RayOptions, ray_session

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
        from featstore.ray_engine import worker_device

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
    refs = tuple(resolve_model(name, overrides.get(name)) for name in models)
    # The local engine loads its detector now: a pack that does not load fails before
    # the store is touched. Ray actors load theirs (and pick its device where they run);
    # the driver only finds the file, for the provenance.
    onnx_device = _onnx_device(device, runtime.device) if ray is None else None
    local_detector = FaceDetector(detector, device=onnx_device or "cpu") if ray is None else None
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
            onnx_device=onnx_device,
            runtime=runtime,
            store=location,
            base_dir=base,
            provenance=provenance,
            extracted_at=datetime.now(timezone.utc),
        )
        if ray is not None:
            from featstore.ray_engine import run_on_ray

            assert ray_options is not None
            done = run_on_ray(ray, plan, spec, ray_options, counts)
            providers, timings = done.providers, {**timings, **done.timings}
        else:
            assert local_detector is not None
            timings.update(_run(plan, spec, local_detector, counts))
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
    detector_file: Path,
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


def _tasks(inputs: IdentityInputs) -> Iterable[ImageTask]:
    if inputs.face is not None:
        yield ImageTask(inputs.identity, "face", inputs.face, None)
    for index, frame in enumerate(inputs.frames):
        yield ImageTask(inputs.identity, "frame", frame, index)


class Extractor:
    """The models of one process, and the per-identity code both engines share.

    Args:
        spec: the run's settings.
        detector: a detector already loaded (the local engine loads it before planning).
    """

    def __init__(self, spec: WorkerSpec, detector: FaceDetector | None = None) -> None:
        self.spec = spec
        onnx_device = spec.onnx_device or _onnx_device(spec.device, spec.runtime.device)
        self.detector = detector or FaceDetector(spec.detector, device=onnx_device)
        runtime = spec.runtime
        self.embedders = {
            ref.name: DinoEmbedder(
                ref, device=spec.device, precision=runtime.precision, source=runtime.dinov2_source
            )
            for ref in spec.refs
        }
        # Threads of one process share the models: decoding and writing run outside it.
        self._models_lock = threading.Lock()

    def extract_identity(self, job: IdentityJob) -> dict[str, int]:
        """Decode, detect, embed and write one identity; its images counted by status.

        Decoding happens here, in the calling thread, so a second identity in flight on
        another thread decodes while this one runs the models.
        """
        tasks = job.tasks()
        dataset = DecodeDataset(tasks, self.spec.detector.det_size)
        size = self.spec.runtime.batch_size
        results: list[ImageResult] = []
        for start in range(0, len(tasks), size):
            batch = collate([dataset[i] for i in range(start, min(start + size, len(tasks)))])
            with self._models_lock:
                results += self.process_batch(batch, lambda _: job.models)
        self.write(job, results)
        return dict(Counter(r.status for r in results))

    def process_batch(
        self, batch: DecodedBatch, models_of: Callable[[int], tuple[str, ...]]
    ) -> list[ImageResult]:
        """Detect and embed a decoded batch; `models_of(i)`: the models image `i` needs."""
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
        detector = self.detector
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
        for name, embedder in self.embedders.items():
            rows = [r for r in with_face if name in models_of(batch.decoded[r])]
            if not rows:
                continue
            features = embedder.embed(batch.pixels[rows])
            for row, vector in zip(rows, features, strict=True):
                results[batch.decoded[row]].features[name] = vector
        return results

    def write(self, job: IdentityJob, results: Sequence[ImageResult]) -> None:
        """One partition per model the identity needs, each written whole."""
        spec = self.spec
        for model in job.models:
            table = identity_table(
                results,
                model=model,
                dim=self.embedders[model].ref.dim,
                base_dir=spec.base_dir,
                extracted_at=spec.extracted_at,
            )
            write_partition(
                spec.store,
                model,
                job.inputs.identity,
                table,
                fingerprint=job.fingerprint,
                provenance=spec.provenance[model],
            )


def _run(
    plan: list[IdentityJob],
    spec: WorkerSpec,
    detector: FaceDetector,
    counts: dict[str, int],
) -> dict[str, float]:
    """The local engine: decode, detect, embed and write `plan`; the time spent by phase."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    started = time.perf_counter()
    runtime = spec.runtime
    pending_plan = [_Pending(job, [None] * len(job.tasks())) for job in plan]
    tasks = [task for job in plan for task in job.tasks()]
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
        pin_memory=spec.device.startswith("cuda"),
        prefetch_factor=4 if workers else None,
        # Never fork: a process that already ran OpenCV or OpenMP thread pools (a notebook
        # that extracted before, a caller that decoded images) deadlocks its forked children.
        multiprocessing_context=_worker_start_method() if workers else None,
    )
    # Workers start now and decode ahead while the DINOv2 weights load.
    batches = iter(loader)
    extractor = Extractor(spec, detector)
    loaded = time.perf_counter()
    # Each task's slot in its identity's result list, in task order.
    slots = [(pending, i) for pending in pending_plan for i in range(len(pending.results))]
    writes: list[Future[None]] = []

    def write(pending: _Pending) -> None:
        extractor.write(pending.job, [r for r in pending.results if r is not None])

    bar = tqdm(total=len(tasks), unit="img", disable=not runtime.progress, dynamic_ncols=True)
    position = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="featstore-writer") as writer:
        try:
            for batch in _batches(batches):
                results = extractor.process_batch(batch, _models_from(slots, position))
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


def _models_from(
    slots: Sequence[tuple[_Pending, int]], start: int
) -> Callable[[int], tuple[str, ...]]:
    """The models image `i` of a batch that begins at task `start` needs."""
    return lambda i: slots[start + i][0].job.models


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
