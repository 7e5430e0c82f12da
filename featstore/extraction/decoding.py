"""The worker side of extraction: decode each image once, prepare the model inputs.

Runs inside `torch.utils.data.DataLoader` worker processes, so everything here is
picklable and light on threads: the main process runs the models.

When the run has an ArcFace model (`keep_image`), the decoded RGB image itself also
travels to the main process, in shared memory: its aligned crop needs the keypoints,
which the detector finds only there (see `featstore.extraction.recognition`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
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
    # The decoded RGB images of the rows of `pixels`, one after the other in one uint8
    # buffer (one shared-memory block per batch, not one per image), and their shapes;
    # present when the dataset keeps images (ArcFace). `image_rgb(row)` reads one.
    image_buffer: torch.Tensor | None = None
    image_shapes: list[tuple[int, int, int]] | None = None

    def image_rgb(self, row: int) -> NDArray[np.uint8]:
        """The decoded `[H, W, 3]` RGB image of row `row` of `pixels` (a view, no copy)."""
        if self.image_buffer is None or self.image_shapes is None:
            raise RuntimeError("this batch has no images: DecodeDataset(keep_image=True)")
        sizes = [h * w * c for h, w, c in self.image_shapes]
        start = sum(sizes[:row])
        flat = self.image_buffer.numpy()[start : start + sizes[row]]
        return flat.reshape(self.image_shapes[row])

    def pin_memory(self) -> DecodedBatch:  # DataLoader(pin_memory=True) calls this
        self.pixels = self.pixels.pin_memory()
        return self


_Item = tuple[DecodedImage, Any, Any, Any]


class DecodeDataset(Dataset[_Item]):
    """Decodes `tasks[i]`; an unreadable file is reported, never raised.

    Args:
        keep_image: also return the decoded RGB image (for ArcFace's aligned crop).
    """

    def __init__(self, tasks: list[ImageTask], det_size: int, *, keep_image: bool = False) -> None:
        self.tasks = tasks
        self.det_size = det_size
        self.keep_image = keep_image

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> _Item:
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
            return DecodedImage(task, error=str(exc), file_size=size), None, None, None
        except Exception as exc:  # a decoder bug must not stop a run of millions of images
            text = str(exc).replace(str(task.path), task.path.name)  # no absolute paths
            error = f"{type(exc).__name__}: {text}"
            return DecodedImage(task, error=error, file_size=size), None, None, None
        info = DecodedImage(task, None, img.width, img.height, size, scale)
        full = np.asarray(img) if self.keep_image else None
        return info, pixels, canvas, full  # uint8: 4x less to move than float32


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


def collate(items: list[_Item]) -> DecodedBatch:
    """Normalise the decodable images straight into shared-memory batch tensors.

    Runs in the worker: the main process receives ready tensors and copies nothing
    (a tensor already in shared memory crosses the process boundary as a handle).
    """
    decoded = [i for i, item in enumerate(items) if item[1] is not None]
    images = [item[0] for item in items]
    size = items[decoded[0]][2].shape[0] if decoded else 0
    pixels = torch.empty((len(decoded), 3, DINOV2_SIZE, DINOV2_SIZE))
    blobs = torch.empty((len(decoded), 3, size, size))
    in_worker = torch.utils.data.get_worker_info() is not None
    if in_worker:
        pixels.share_memory_(), blobs.share_memory_()
    pixels_np, blobs_np = pixels.numpy(), blobs.numpy()
    for row, i in enumerate(decoded):
        normalize_dinov2(items[i][1], out=pixels_np[row])
        detector_blob(items[i][2], out=blobs_np[row])
    batch = DecodedBatch(images, decoded, pixels, blobs)
    if decoded and items[decoded[0]][3] is not None:
        # One copy into one shared-memory block in the worker; none in the main process.
        batch.image_shapes = [items[i][3].shape for i in decoded]
        total = sum(int(items[i][3].size) for i in decoded)
        batch.image_buffer = torch.empty(total, dtype=torch.uint8)
        if in_worker:
            batch.image_buffer.share_memory_()
        flat, start = batch.image_buffer.numpy(), 0
        for i in decoded:
            image = items[i][3]
            flat[start : start + image.size] = image.reshape(-1)
            start += image.size
    return batch


def init_worker(_: int) -> None:
    """Keep each worker to one thread: the cores belong to the models."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
