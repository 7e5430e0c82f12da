"""Thumbnails for `featstore report`: small JPEGs with the box and the landmarks drawn.

Images are read from where the extraction found them: the stored `image_path` joined
to the `base_dir` recorded in the model's provenance, and only there: a path that leaves
the base dir (`../../etc/x.png`, or an absolute path elsewhere, as an imported JSON may
hold) is never opened, so a store cannot make the report embed files from elsewhere on
the machine. The check is on the path as written (`..` resolved, symlinks not), like the
extraction, which follows the dataset's own symlinks. A file that is gone, outside or
cannot be decoded is never an error here: the thumbnail carries the reason instead of
pixels, and the report shows a placeholder and lists it.
"""

from __future__ import annotations

import base64
import io
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

THUMBNAIL_PX = 128
# Pixels a thumbnail may decode (after JPEG's draft scaling): ~100 MB as RGB. PNG and most
# other formats cannot decode at a reduced scale, and a small file can hold a huge image
# (0.5 MB of PNG, 13000x13000: 1.5 GB and 6 s to decode), so such images are not decoded.
MAX_DECODED_PIXELS = 32_000_000
JPEG_QUALITY = 80
BOX_COLOUR = (0, 220, 90)
# left eye, right eye, nose, left mouth corner, right mouth corner (docs/formats.md's order)
LANDMARK_COLOURS = ((255, 60, 60), (60, 140, 255), (255, 220, 0), (255, 0, 255), (0, 230, 230))


@dataclass(frozen=True)
class Thumbnail:
    """One image of the gallery: a `data:` URI, or why there is none.

    Attributes:
        image_path: the path stored in the row.
        resolved: where the file was looked for (None when the store records no base dir).
        data_uri: `data:image/jpeg;base64,...`, or None when the image cannot be shown.
        problem: why it cannot be shown (`missing`, `cannot decode: ...`), else None.
    """

    image_path: str
    resolved: Path | None
    data_uri: str | None
    problem: str | None


OUTSIDE_BASE_DIR = "outside the extraction's base dir: not read"


def resolve_image(base_dir: str | None, image_path: str) -> Path | None:
    """The file a stored path points at: `image_path` against the extraction's base dir."""
    if posixpath.isabs(image_path):
        return Path(image_path)
    if base_dir is None:
        return None
    return Path(posixpath.join(base_dir, image_path))


def inside_base_dir(base_dir: str, path: Path) -> bool:
    """Whether `path`, its `..` resolved (symlinks are not), lies under `base_dir`."""
    base = os.path.normpath(os.path.abspath(base_dir))
    target = os.path.normpath(os.path.abspath(path))
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


def make_thumbnail(
    base_dir: str | None,
    image_path: str,
    *,
    box: Sequence[float] | None = None,
    landmarks: Sequence[Sequence[float]] | None = None,
    size: int = THUMBNAIL_PX,
) -> Thumbnail:
    """A JPEG thumbnail (longest side `size` px) with the face box and 5 landmarks drawn.

    Args:
        base_dir: the extraction's base dir (from the model's provenance), or None.
        image_path: the stored path of the image.
        box: `[x1, y1, x2, y2]` in the original image's pixels, or None.
        landmarks: `[5, 2]` points in the original image's pixels, or None.
        size: the longest side of the thumbnail in pixels.
    """
    path = resolve_image(base_dir, image_path)
    if path is None:
        return Thumbnail(image_path, None, None, "no base_dir in the provenance")
    if base_dir is None or not inside_base_dir(base_dir, path):
        return Thumbnail(image_path, path, None, OUTSIDE_BASE_DIR)
    if not path.is_file():
        return Thumbnail(image_path, path, None, "missing")
    try:
        with Image.open(path) as img:
            width, height = img.size
            # JPEG decoders can skip most of the work for a much smaller target.
            img.draft("RGB", (size * 2, size * 2))
            decoded = img.size[0] * img.size[1]  # what decoding would allocate, per band
            if decoded > MAX_DECODED_PIXELS:
                return Thumbnail(
                    image_path,
                    path,
                    None,
                    f"{width}x{height} pixels: not decoded for a thumbnail (more than "
                    f"{MAX_DECODED_PIXELS // 1_000_000} megapixels; the report's budget)",
                )
            rgb = img.convert("RGB")
            rgb.thumbnail((size, size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return Thumbnail(image_path, path, None, f"cannot decode: {exc}")
    scale_x, scale_y = rgb.width / width, rgb.height / height
    draw = ImageDraw.Draw(rgb)
    if box is not None:
        x1, y1, x2, y2 = box
        draw.rectangle(
            (x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y), outline=BOX_COLOUR, width=2
        )
    if landmarks is not None:
        for (x, y), colour in zip(landmarks, LANDMARK_COLOURS, strict=False):
            cx, cy = x * scale_x, y * scale_y
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=colour)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return Thumbnail(image_path, path, jpeg_data_uri(buffer.getvalue()), None)


def jpeg_data_uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
