"""`Extractor`: the models of one process, and the per-identity work both engines share.

The local engine (`featstore.extraction.local_engine`) streams decoded batches across
identities through one `Extractor`; the Ray engine (`featstore.extraction.ray_engine`)
gives each actor its own and sends it whole identities (`Extractor.extract_identity`).
Both import this module and neither imports the other.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from featstore.errors import InputError
from featstore.extraction.decoding import DecodeDataset, DecodedBatch, ImageTask, collate
from featstore.extraction.detection import Detection, DetectorSettings, FaceDetector
from featstore.extraction.embedding import DinoEmbedder, DinoModelRef, DinoSource, Precision
from featstore.extraction.fingerprint import InputStat, content_digest
from featstore.extraction.inputs import IdentityInputs
from featstore.extraction.recognition import ArcFaceEmbedder, ArcFaceRef
from featstore.extraction.rows import (
    NO_FACE,
    NO_POSE,
    OK,
    UNREADABLE,
    ImageResult,
    identity_table,
)
from featstore.store import Store
from featstore.store.location import StoreLocation
from featstore.store.writer import COMMIT_IDENTITIES, TableWriter

log = logging.getLogger(__name__)
# Where the engines log progress when the bar is off; the CLI shows it without -v.


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run (none of it changes the numbers, except precision)."""

    device: str | None = None  # None: "cuda" when torch sees a GPU, else "cpu"
    batch_size: int = 32
    workers: int | None = None  # decoding processes; None: one per spare core
    precision: Precision = "fp32"
    dinov2_source: DinoSource = "featstore"
    progress: bool = True
    # Identities per store commit (the local engine; Ray workers commit each identity).
    commit_identities: int = COMMIT_IDENTITIES

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.commit_identities < 1:
            raise InputError(f"--commit-every must be at least 1, got {self.commit_identities}.")


@dataclass(frozen=True)
class IdentityJob:
    """One identity to extract: the unit of work of both engines."""

    inputs: IdentityInputs
    stat: InputStat  # taken when planned: a file changed mid-run is redone next run
    models: tuple[str, ...]  # the models whose partition is missing or stale

    def tasks(self) -> list[ImageTask]:
        return list(image_tasks(self.inputs))

    def fingerprint(self) -> str:
        """What the identity's rows record (`featstore.extraction.fingerprint`): the stat
        taken when planned, and the files' content hash when they still have that stat
        (read after decoding, from the page cache), so a copy of them is not redone."""
        paths = self.inputs.paths
        content = content_digest(paths)
        if content is not None and self.inputs.stat().stat != self.stat.stat:
            content = None  # changed since planned: the rows may be of other bytes
        return self.stat.recorded(content)


ModelRef = DinoModelRef | ArcFaceRef


class Embedder(Protocol):
    """A loaded model: `dim` floats per image with a face (DINOv2, ArcFace)."""

    @property
    def dim(self) -> int: ...

    def embed_batch(
        self, batch: DecodedBatch, rows: Sequence[int], detections: Sequence[Detection]
    ) -> NDArray[np.float32]:
        """Unit vectors `[len(rows), dim]` for `rows` of `batch.pixels`, one detection each."""
        ...


@dataclass(frozen=True)
class WorkerSpec:
    """What a process needs to extract identities into the store (picklable, for Ray)."""

    refs: tuple[ModelRef, ...]
    detector: DetectorSettings
    device: str  # torch device
    onnx_device: str | None  # the detector's device; None: decided where it loads
    runtime: RuntimeOptions
    store: StoreLocation
    base_dir: Path
    provenance: Mapping[str, Mapping[str, Any]]
    extracted_at: datetime
    commit_identities: int = COMMIT_IDENTITIES

    @property
    def keeps_images(self) -> bool:
        """Whether decoding must hand over the decoded image (ArcFace crops it after detection)."""
        return any(isinstance(ref, ArcFaceRef) for ref in self.refs)


def onnx_device(device: str, requested: str | None) -> str:
    """The detector follows the torch device; on auto, fall back loudly if ORT lacks CUDA."""
    import onnxruntime

    auto_cuda = device.startswith("cuda") and requested is None
    if auto_cuda and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        log.warning(
            "torch sees a GPU but onnxruntime has no CUDA provider: the detector runs on "
            "the CPU. Install onnxruntime-gpu (featstore-faces[gpu]) to detect on the GPU."
        )
        return "cpu"
    return device


def image_tasks(inputs: IdentityInputs) -> Iterable[ImageTask]:
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
        ort_device = spec.onnx_device or onnx_device(spec.device, spec.runtime.device)
        self.detector = detector or FaceDetector(spec.detector, device=ort_device)
        runtime = spec.runtime
        self.embedders: dict[str, Embedder] = {
            ref.name: ArcFaceEmbedder(ref, device=ort_device)
            if isinstance(ref, ArcFaceRef)
            else DinoEmbedder(
                ref, device=spec.device, precision=runtime.precision, source=runtime.dinov2_source
            )
            for ref in spec.refs
        }
        # Threads of one process share the models: decoding and writing run outside it.
        self._models_lock = threading.Lock()
        self._writers: dict[str, TableWriter] = {}
        self._writers_lock = threading.Lock()
        self.identities_written = 0  # handed to the writers; committed by the next flush

    def extract_identity(self, job: IdentityJob) -> dict[str, int]:
        """Decode, detect, embed and write one identity; its images counted by status.

        Decoding happens here, in the calling thread, so a second identity in flight on
        another thread decodes while this one runs the models.
        """
        tasks = job.tasks()
        dataset = DecodeDataset(
            tasks, self.spec.detector.det_size, keep_image=self.spec.keeps_images
        )
        size = self.spec.runtime.batch_size
        results: list[ImageResult] = []
        for start in range(0, len(tasks), size):
            batch = collate([dataset[i] for i in range(start, min(start + size, len(tasks)))])
            with self._models_lock:
                results += self.process_batch(batch, lambda _: job.models)
        with self._writers_lock:
            self.write(job, results)
            self.flush()  # an identity handed back to the driver is committed
        counts = Counter(r.status for r in results)
        counts[NO_POSE] = sum(r.without_pose for r in results)
        return dict(counts)

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
            faces = [results[batch.decoded[r]].detection for r in rows]
            features = embedder.embed_batch(batch, rows, [d for d in faces if d is not None])
            for row, vector in zip(rows, features, strict=True):
                results[batch.decoded[row]].features[name] = vector
        return results

    def write(self, job: IdentityJob, results: Sequence[ImageResult]) -> None:
        """The identity's rows for each model it needs, queued for that model's commit."""
        spec = self.spec
        fingerprint = job.fingerprint()
        for model in job.models:
            table = identity_table(
                results,
                model=model,
                dim=self.embedders[model].dim,
                base_dir=spec.base_dir,
                extracted_at=spec.extracted_at,
            )
            self._writer(model).add(job.inputs.identity, table, fingerprint)
        self.identities_written += 1

    def committed_identities(self) -> int:
        """Identities written whose rows every model's writer has committed."""
        queued = set().union(*(w.queued for w in self._writers.values()))
        return self.identities_written - len(queued)

    def flush(self) -> None:
        """Commit every model's queued identities."""
        for writer in self._writers.values():
            writer.flush()

    def _writer(self, model: str) -> TableWriter:
        if model not in self._writers:
            spec = self.spec
            self._writers[model] = TableWriter(
                Store(spec.store).table(model),
                spec.provenance[model],
                command="extract",
                max_identities=spec.commit_identities,
            )
        return self._writers[model]
