"""Decoding an image once and preparing the two model inputs from the same pixels.

docs/formats.md: Pillow decodes (content decides the format, not the extension), converts
to RGB, no EXIF rotation. DINOv2 sees the whole image resized to 224x224 bilinear;
the detector sees it in BGR, letterboxed into det_size x det_size exactly as
InsightFace's `SCRFD.detect` does it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DINOV2_SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
# InsightFace's detector normalisation: (pixel - 127.5) / 128, RGB order in the blob.
DETECTOR_MEAN = 127.5
DETECTOR_STD = 128.0


class UnreadableImageError(Exception):
    """An image file cannot be decoded; the message is the one-line reason."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def decode_image(path: Path) -> Image.Image:
    """Decode a file into an RGB Pillow image, or raise UnreadableImageError."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise UnreadableImageError(f"image too large to decode safely: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        # Pillow raises UnidentifiedImageError (an OSError) for non-images, OSError for
        # truncated files, SyntaxError/ValueError for some corrupt headers.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if path.stat().st_size == 0:
            reason = "empty file (0 bytes)"
        raise UnreadableImageError(reason) from exc


def dinov2_resize(img: Image.Image) -> NDArray[np.uint8]:
    """`[224, 224, 3]` uint8 RGB: the whole image, bilinear, aspect ratio not kept."""
    return np.asarray(img.resize((DINOV2_SIZE, DINOV2_SIZE), Image.Resampling.BILINEAR))


def normalize_dinov2(
    rgb: NDArray[np.uint8], out: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """`[3, 224, 224]` float32: scale to [0, 1], ImageNet mean/std (into `out` if given)."""
    chw = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
    return np.divide(chw - IMAGENET_MEAN, IMAGENET_STD, out=out)


def dinov2_input(img: Image.Image) -> NDArray[np.float32]:
    """`[3, 224, 224]` float32: bilinear resize, scale to [0, 1], ImageNet normalise."""
    return normalize_dinov2(dinov2_resize(img))


def letterbox(img: Image.Image, det_size: int) -> tuple[NDArray[np.uint8], float]:
    """InsightFace's letterbox: BGR, resized to fit `det_size` square, zero padded.

    Returns:
        The `[det_size, det_size, 3]` uint8 BGR canvas and the scale from original
        pixels to letterboxed pixels (detections are divided by it).
    """
    import cv2

    bgr = np.asarray(img)[:, :, ::-1]
    height, width = bgr.shape[:2]
    # Same arithmetic as SCRFD._detect_candidates, so boxes match InsightFace's exactly.
    im_ratio = float(height) / width
    if im_ratio > 1.0:
        new_height = det_size
        new_width = int(new_height / im_ratio)
    else:
        new_width = det_size
        new_height = int(new_width * im_ratio)
    scale = float(new_height) / height
    canvas = np.zeros((det_size, det_size, 3), dtype=np.uint8)
    canvas[:new_height, :new_width] = cv2.resize(np.ascontiguousarray(bgr), (new_width, new_height))
    return canvas, scale


def detector_blob(
    canvas: NDArray[np.uint8], out: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """`[3, S, S]` float32 detector input from a letterboxed BGR canvas (into `out` if given).

    Equals `cv2.dnn.blobFromImage(canvas, 1/128, size, (127.5,)*3, swapRB=True)[0]` bit for
    bit: (x - 127.5) and the scale 1/128 are exact in float32.
    """
    rgb_chw = canvas[:, :, ::-1].transpose(2, 0, 1)
    out = np.subtract(rgb_chw, np.float32(DETECTOR_MEAN), out=out, dtype=np.float32)
    out *= np.float32(1.0 / DETECTOR_STD)
    return out


def detector_input(img: Image.Image, det_size: int) -> tuple[NDArray[np.float32], float]:
    """InsightFace's letterbox and blob for one image (see `letterbox`, `detector_blob`)."""
    canvas, scale = letterbox(img, det_size)
    return detector_blob(canvas), scale
