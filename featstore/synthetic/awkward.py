"""The awkward inputs real face datasets contain, written into a face/video tree.

Used by the tests and the demo: every case here must end as rows with a status (or a
reported note), never as a crash.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from featstore.synthetic.images import draw_face

# Names that break naive code: non-ASCII, spaces, quotes, Hive's `=`, URL's `%`,
# dots, and strings a CSV or Hive reader would turn into numbers.
AWKWARD_IDENTITIES = ("张伟", "Anne Marie", "o'brien", "007", "12345", "x=y", "50%", "dot.name")
FACE_WITHOUT_VIDEO = "only_face"
VIDEO_WITHOUT_FACE = "only_video"
BAD_FRAMES_IDENTITY = "bad_frames"

# file name -> status the extraction must give it
BAD_FRAME_STATUS = {
    "f00_zero_bytes.jpg": "unreadable",
    "f01_truncated.jpg": "unreadable",
    "f02_not_an_image.jpg": "unreadable",
    "f03_png_inside.jpg": "ok",
    "f04_grayscale.jpg": "ok",
    "f05_cmyk.jpg": "ok",
    "f06_rgba.png": "ok",
    "f07_large_3000x2400.jpg": "ok",
    "f08_two_faces.jpg": "ok",
    "f09_dark.jpg": "no_face",
}


def _jpeg_bytes(img: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kwargs)
    return buf.getvalue()


def _face(seed: int, size: tuple[int, int] = (320, 240), **kwargs: object) -> Image.Image:
    return draw_face(size, seed=seed, **kwargs)  # type: ignore[arg-type]


def write_awkward_identities(face_dir: Path, video_dir: Path, *, frames: int = 3) -> list[str]:
    """Identities with awkward names, each with a frontal image and `frames` frames."""
    for n, name in enumerate(AWKWARD_IDENTITIES):
        _face(1000 + n).save(face_dir / f"{name}.jpg", quality=90)
        folder = video_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(frames):
            w, h = 320, 240
            center = (w / 2 + 12 * (i - 1), h / 2 + 6 * (i - 1))
            tint = (1.0 + 0.08 * (i - 1), 0.92, 0.85 - 0.06 * (i - 1))
            _face(2000 + 10 * n + i, center=center, tint=tint).save(
                folder / f"{i:04d}.jpg", quality=90
            )
    return list(AWKWARD_IDENTITIES)


def write_bad_frames(face_dir: Path, video_dir: Path) -> dict[str, str]:
    """An identity whose frames are every kind of bad file; returns name -> expected status."""
    _face(7).save(face_dir / f"{BAD_FRAMES_IDENTITY}.jpg", quality=90)
    folder = video_dir / BAD_FRAMES_IDENTITY
    folder.mkdir(parents=True, exist_ok=True)
    good = _face(8, center=(170, 125))
    (folder / "f00_zero_bytes.jpg").write_bytes(b"")
    full = _jpeg_bytes(good)
    (folder / "f01_truncated.jpg").write_bytes(full[: len(full) // 3])
    (folder / "f02_not_an_image.jpg").write_text("this is not an image\n", "utf-8")
    good.save(folder / "f03_png_inside.jpg", format="PNG")
    good.convert("L").save(folder / "f04_grayscale.jpg", quality=90)
    good.convert("CMYK").save(folder / "f05_cmyk.jpg", quality=90)
    rgba = good.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(folder / "f06_rgba.png")
    _face(9, size=(3000, 2400), axes=(420.0, 520.0)).save(
        folder / "f07_large_3000x2400.jpg", quality=85
    )
    two = _face(10, size=(640, 480), center=(160, 240), axes=(70.0, 90.0))
    ImageDraw.Draw(two).ellipse((420, 170, 540, 310), fill=(200, 184, 170))
    two.save(folder / "f08_two_faces.jpg", quality=90)
    dark = Image.fromarray(np.full((240, 320, 3), 20, dtype=np.uint8))
    dark.save(folder / "f09_dark.jpg", quality=90)
    return dict(BAD_FRAME_STATUS)


def write_orphans(face_dir: Path, video_dir: Path) -> None:
    """A frontal image without a video folder and a video folder without a frontal image."""
    _face(11).save(face_dir / f"{FACE_WITHOUT_VIDEO}.jpg", quality=90)
    folder = video_dir / VIDEO_WITHOUT_FACE
    folder.mkdir(parents=True, exist_ok=True)
    _face(12).save(folder / "0000.jpg", quality=90)
