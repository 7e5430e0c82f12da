"""The worker side of extraction: decode each image once, prepare both model inputs.

Runs inside `torch.utils.data.DataLoader` worker processes, so everything here is
picklable and light on threads: the main process runs the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from featstore.extraction.images import (
    DINOV2_SIZE,
    UnreadableImageError,
    decode_image,
    detector_blob,
    dinov2_resize,
    letterbox,
    normalize_dinov2,
)
from featstore.extraction.inputs import is_utf8_name


@dataclass(frozen=True)
class ImageTask:
    """One image of one identity to extract."""

    identity: str
    role: str  # "face" or "frame"
    path: Path
    frame_index: int | None


@dataclass
class DecodedImage:
    """What a worker learned about one file; pixels travel separately, batched."""

    task: ImageTask
    error: str | None  # None when decoded
    width: int = 0
    height: int = 0
    file_size: int | None = None
    det_scale: float = 0.0


@dataclass
class DecodedBatch:
    """A batch as the main process receives it: model inputs for the decodable images."""

    images: list[DecodedImage]
    decoded: list[int]  # positions in `images` of the rows of `pixels` / `det_blobs`
    pixels: torch.Tensor  # [K, 3, 224, 224] float32
    det_blobs: torch.Tensor  # [K, 3, S, S] float32

    def pin_memory(self) -> DecodedBatch:  # DataLoader(pin_memory=True) calls this
        self.pixels = self.pixels.pin_memory()
        return self


class DecodeDataset(Dataset[tuple[DecodedImage, Any, Any]]):
    """Decodes `tasks[i]`; an unreadable file is reported, never raised."""

    def __init__(self, tasks: list[ImageTask], det_size: int) -> None:
        self.tasks = tasks
        self.det_size = det_size

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> tuple[DecodedImage, Any, Any]:
        task = self.tasks[index]
        try:
            size: int | None = task.path.stat().st_size
        except OSError:
            size = None
        try:
            _check_name(task)
            img = decode_image(task.path)
            canvas, scale = letterbox(img, self.det_size)
            pixels = dinov2_resize(img)
        except UnreadableImageError as exc:
            return DecodedImage(task, error=str(exc), file_size=size), None, None
        except Exception as exc:  # a decoder bug must not stop a run of millions of images
            text = str(exc).replace(str(task.path), task.path.name)  # no absolute paths
            return (
                DecodedImage(task, error=f"{type(exc).__name__}: {text}", file_size=size),
                None,
                None,
            )
        info = DecodedImage(task, None, img.width, img.height, size, scale)
        return info, pixels, canvas  # uint8: 4x less to move than float32


def _check_name(task: ImageTask) -> None:
    """Refuse an image whose name (or identity folder's name) is not UTF-8.

    The store holds such a name with its bytes escaped (`inputs.storable_name`), a path
    that opens nothing: extracting it would hand the trainer a file it cannot read.
    """
    names = [task.path.name] + ([task.path.parent.name] if task.role == "frame" else [])
    if not all(is_utf8_name(name) for name in names):
        raise UnreadableImageError(
            "file name is not valid UTF-8 (stored with each such byte as \\xNN); "
            "rename it to UTF-8 to extract it"
        )


def collate(items: list[tuple[DecodedImage, Any, Any]]) -> DecodedBatch:
    """Normalise the decodable images straight into shared-memory batch tensors.

    Runs in the worker: the main process receives two ready tensors and copies nothing
    (a tensor already in shared memory crosses the process boundary as a handle).
    """
    decoded = [i for i, (_, pixels, _) in enumerate(items) if pixels is not None]
    images = [info for info, _, _ in items]
    size = items[decoded[0]][2].shape[0] if decoded else 0
    pixels = torch.empty((len(decoded), 3, DINOV2_SIZE, DINOV2_SIZE))
    blobs = torch.empty((len(decoded), 3, size, size))
    if torch.utils.data.get_worker_info() is not None:
        pixels.share_memory_(), blobs.share_memory_()
    pixels_np, blobs_np = pixels.numpy(), blobs.numpy()
    for row, i in enumerate(decoded):
        normalize_dinov2(items[i][1], out=pixels_np[row])
        detector_blob(items[i][2], out=blobs_np[row])
    return DecodedBatch(images, decoded, pixels, blobs)


def init_worker(_: int) -> None:
    """Keep each worker to one thread: the cores belong to the models."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
