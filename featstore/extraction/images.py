"""Decoding an image once and preparing the two model inputs from the same pixels.

docs/formats.md: Pillow decodes (content decides the format, not the extension), converts
to RGB, no EXIF rotation. DINOv2 sees the whole image resized to 224x224 bilinear;
the detector sees it in BGR, letterboxed into det_size x det_size exactly as
InsightFace's `SCRFD.detect` does it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

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
    """Decode a file into an RGB Pillow image, or raise UnreadableImageError.

    Only a regular file is read: a folder, a FIFO, a device (a symlink to /dev/zero), a
    socket, a dangling symlink or a symlink loop named like an image is unreadable, with
    the reason. The file is opened non-blocking and checked again with `fstat` after the
    open, so a FIFO swapped in after the check cannot block the run. Reasons never hold
    the file's path: the row already names it, relative to the base dir.
    """
    with _open_regular(path) as file:
        try:
            with Image.open(file) as img:
                img.load()
                return img.convert("RGB")
        except Image.DecompressionBombError as exc:
            raise UnreadableImageError(f"image too large to decode safely: {exc}") from exc
        except UnidentifiedImageError as exc:
            raise UnreadableImageError(
                "cannot identify image file (not an image format Pillow decodes)"
            ) from exc
        except (OSError, ValueError, SyntaxError) as exc:
            # Pillow raises OSError for truncated files, SyntaxError/ValueError for some
            # corrupt headers.
            text = str(exc).replace(str(path), path.name)
            reason = text.splitlines()[0] if text else type(exc).__name__
            raise UnreadableImageError(reason) from exc


def _open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading if it is a non-empty regular file (see `decode_image`)."""
    try:
        kind = _not_regular(os.stat(path).st_mode)  # before opening: never open a device
        if kind is None:
            flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(path, flags | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise UnreadableImageError(_os_reason(path, exc)) from exc
    if kind is None:
        st = os.fstat(fd)  # what was opened, if it changed since the stat
        kind = _not_regular(st.st_mode)
        if kind is None and st.st_size == 0:
            os.close(fd)
            raise UnreadableImageError("empty file (0 bytes)")
        if kind is None:
            return os.fdopen(fd, "rb")
        os.close(fd)
    via = " (through a symbolic link)" if path.is_symlink() else ""
    raise UnreadableImageError(f"not a regular file: {kind}{via}")


def _not_regular(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a file"


def _os_reason(path: Path, exc: OSError) -> str:
    """Why a file cannot be opened, without its path."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of symbolic links)"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return "dangling symbolic link (its target does not exist)"
    if exc.errno == errno.ENOENT:
        return "file not found (removed after the input folders were listed?)"
    return exc.strerror or type(exc).__name__


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
