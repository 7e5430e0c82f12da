"""The worker side of extraction: decode each image once, prepare both model inputs.

Runs inside `torch.utils.data.DataLoader` worker processes, so everything here is
picklable and light on threads: the main process runs the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from featstore.images import UnreadableImageError, decode_image, detector_input, dinov2_input


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
    det_blobs: torch.Tensor  # [K, 3, S, S] float32 (a tensor: it crosses processes in shared memory)

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
            img = decode_image(task.path)
            blob, scale = detector_input(img, self.det_size)
            pixels = dinov2_input(img)
        except UnreadableImageError as exc:
            return DecodedImage(task, error=str(exc), file_size=size), None, None
        except Exception as exc:  # a decoder bug must not stop a run of millions of images
            return DecodedImage(task, error=f"{type(exc).__name__}: {exc}", file_size=size), None, None
        info = DecodedImage(task, None, img.width, img.height, size, scale)
        return info, pixels, blob


def collate(items: list[tuple[DecodedImage, Any, Any]]) -> DecodedBatch:
    """Stack the decodable images' inputs (in the worker, so the main process gets one tensor)."""
    decoded = [i for i, (_, pixels, _) in enumerate(items) if pixels is not None]
    images = [info for info, _, _ in items]
    if decoded:
        pixels = torch.from_numpy(np.stack([items[i][1] for i in decoded]))
        blobs = torch.from_numpy(np.stack([items[i][2] for i in decoded]))
    else:
        pixels = torch.empty((0, 3, 224, 224))
        blobs = torch.empty((0, 3, 0, 0))
    return DecodedBatch(images, decoded, pixels, blobs)


def init_worker(_: int) -> None:
    """Keep each worker to one thread: the cores belong to the models."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
