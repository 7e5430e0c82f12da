"""Synthetic images for the synthetic detector: light elliptical "faces" on dark noise.

The faces are what :mod:`featstore.synthetic.detector` detects: a filled light ellipse
gives one box around it, and its colour balance (red vs blue, green vs magenta) moves the
predicted landmarks, so frames of one synthetic person with different tints and offsets
get different landmarks (and thus different alignment angles) relative to their box.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from featstore.synthetic.detector import NEUTRAL_TINT

__all__ = [
    "JPEG_QUALITY",
    "draw_background",
    "draw_face",
    "generate_face_tree",
    "identity_name",
]

JPEG_QUALITY = 90

# Background: dark (well below the detector's "light" threshold, pixel ~147) with noise.
_BG_LEVEL = 38.0
_BG_RAMP = 22.0
_BG_NOISE = 8.0
# Face level: 90 + 140 * brightness, i.e. 230 at brightness 1.  The detector's mask ramps
# from pixel ~147 to ~223, so brightness >= ~0.75 is a confident face.
_FACE_BASE = 90.0
_FACE_GAIN = 140.0
_FACE_NOISE = 4.0
# Left-to-right shading within the face, as a fraction of its level; subtle so the
# detector's moment-based box stays on the ellipse.
_FACE_SHADING = 0.04


def _rng(seed: int | Sequence[int]) -> np.random.Generator:
    return np.random.default_rng(seed)


def _background_array(
    size: tuple[int, int], rng: np.random.Generator, noise: np.ndarray | None = None
) -> np.ndarray:
    """Float ``[h, w, 3]`` dark background: a soft diagonal ramp plus Gaussian noise."""
    width, height = size
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    direction = rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
    ramp = _BG_LEVEL + _BG_RAMP * (direction[0] * xs + direction[1] * ys)
    colour = rng.uniform(0.8, 1.2, size=3).astype(np.float32)  # slight colour cast
    if noise is None:
        noise = rng.standard_normal(size=(height, width, 3), dtype=np.float32)
    return ramp[:, :, None] * colour[None, None, :] + _BG_NOISE * noise


def _to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8))


def _ellipse_mask(
    size: tuple[int, int], center: tuple[float, float], axes: tuple[float, float]
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Anti-aliased ellipse coverage (0..1) on the ellipse's bounding box only.

    Uses the first-order signed distance ``(1 - r) / |grad r|`` of the normalised radius
    ``r`` with a ~1.5 px ramp: soft edges keep JPEG ringing small, and working on the
    bounding box keeps it fast (no supersampled canvas).
    """
    width, height = size
    cx, cy = center
    ax, ay = max(float(axes[0]), 1.0), max(float(axes[1]), 1.0)
    x0, x1 = max(int(np.floor(cx - ax - 2)), 0), min(int(np.ceil(cx + ax + 2)), width)
    y0, y1 = max(int(np.floor(cy - ay - 2)), 0), min(int(np.ceil(cy + ay + 2)), height)
    box = (slice(y0, y1), slice(x0, x1))
    if x0 >= x1 or y0 >= y1:
        return box, np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), 1), dtype=np.float32)
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    r = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
    grad = np.sqrt((dx / ax**2) ** 2 + (dy / ay**2) ** 2) / np.maximum(r, 1e-6)
    distance = (1.0 - r) / np.maximum(grad, 1e-6)  # > 0 inside, in pixels
    mask = np.clip(distance / 1.5 + 0.5, 0.0, 1.0)
    return box, mask[:, :, None]


def draw_background(
    size: tuple[int, int] = (320, 240), seed: int | Sequence[int] = 0
) -> Image.Image:
    """An RGB image without any face: dark noisy background only.

    Args:
        size: ``(width, height)``.
        seed: Seed (or seed sequence) of the noise; same seed, same pixels.
    """
    return _to_image(_background_array(size, _rng(seed)))


def draw_face(
    size: tuple[int, int] = (320, 240),
    *,
    center: tuple[float, float] | None = None,
    axes: tuple[float, float] = (45.0, 55.0),
    brightness: float = 0.9,
    tint: tuple[float, float, float] = NEUTRAL_TINT,
    seed: int | Sequence[int] = 0,
) -> Image.Image:
    """An RGB image with one light elliptical "face" on a dark noisy background.

    Args:
        size: ``(width, height)``.
        center: Ellipse centre in pixels; the image centre by default.
        axes: Semi-axes ``(horizontal, vertical)`` in pixels.
        brightness: 0..1; the face's grey level is ``90 + 140 * brightness`` before tint.
            The synthetic detector is confident from about 0.75 up and ignores < 0.6.
        tint: Per-channel (R, G, B) multipliers.  ``NEUTRAL_TINT`` reads as frontal; more
            red than that turns the detected landmarks one way, more blue the other
            ("yaw"), more / less green moves them down / up ("pitch").
        seed: Seed (or seed sequence) for background and skin noise.
    """
    width, height = size
    rng = _rng(seed)
    # One noise draw serves background and skin (the skin uses it at a lower amplitude).
    noise = rng.standard_normal(size=(height, width, 3), dtype=np.float32)
    canvas = _background_array(size, rng, noise)
    cx, cy = center if center is not None else (width / 2.0, height / 2.0)
    box, mask = _ellipse_mask(size, (cx, cy), axes)
    if mask.size == 0:
        return _to_image(canvas)

    level = _FACE_BASE + _FACE_GAIN * float(brightness)
    xs = (np.arange(box[1].start, box[1].stop, dtype=np.float32) - cx) / max(axes[0], 1.0)
    shading = 1.0 + _FACE_SHADING * np.clip(xs, -1.0, 1.0)  # slightly lighter on the right
    face = level * shading[None, :, None] * np.asarray(tint, dtype=np.float32)[None, None, :]
    face = face + _FACE_NOISE * noise[box]
    canvas[box] = canvas[box] * (1.0 - mask) + face * mask
    return _to_image(canvas)


def identity_name(index: int) -> str:
    """Folder / file stem of synthetic identity ``index``: ``person_000``, ..."""
    return f"person_{index:03d}"


def generate_face_tree(
    root: Path,
    *,
    identities: int,
    frames_per_identity: int,
    size: tuple[int, int] = (320, 240),
    no_face_every: int = 5,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write a small synthetic face dataset.

    Layout::

        <root>/face/person_000.jpg                  frontal, centred, neutral tint
        <root>/video/person_000/frame_0000.jpg      moved / re-tinted per frame

    Each identity has its own size, brightness and skin tint; each video frame shifts the
    face and changes its colour balance so the detector's landmarks (and the angles derived
    from them) vary.  Frames whose 1-based index is a multiple of ``no_face_every`` show
    background only (``no_face_every <= 0`` disables that).  Deterministic for a ``seed``.

    Returns:
        ``(face_dir, video_dir)``.
    """
    root = Path(root)
    face_dir = root / "face"
    video_dir = root / "video"
    face_dir.mkdir(parents=True, exist_ok=True)
    video_dir.mkdir(parents=True, exist_ok=True)
    width, height = size
    short = float(min(width, height))

    for ident in range(identities):
        name = identity_name(ident)
        rng = _rng((seed, ident))
        axes = (short * rng.uniform(0.17, 0.21), short * rng.uniform(0.21, 0.25))
        brightness = float(rng.uniform(0.85, 1.0))
        # Identities differ in size and brightness; their skin is NEUTRAL_TINT so the
        # face/ images are truly frontal for the detector.
        skin = NEUTRAL_TINT
        draw_face(
            size, axes=axes, brightness=brightness, tint=skin, seed=(seed, ident, 0xFACE)
        ).save(face_dir / f"{name}.jpg", quality=JPEG_QUALITY)

        frames = video_dir / name
        frames.mkdir(exist_ok=True)
        for frame in range(frames_per_identity):
            path = frames / f"frame_{frame:04d}.jpg"
            frame_seed = (seed, ident, frame)
            if no_face_every > 0 and (frame + 1) % no_face_every == 0:
                draw_background(size, seed=frame_seed).save(path, quality=JPEG_QUALITY)
                continue
            # Keep the face fully inside the frame: shift by at most ~12% / 8% of the size.
            centre = (
                width / 2.0 + rng.uniform(-0.12, 0.12) * width,
                height / 2.0 + rng.uniform(-0.08, 0.08) * height,
            )
            yaw = float(rng.uniform(-0.12, 0.12))  # red/blue balance -> landmark yaw
            pitch = float(rng.uniform(-0.06, 0.06))  # green balance -> landmark pitch
            tint = (skin[0] * (1.0 + yaw), skin[1] * (1.0 + pitch), skin[2] * (1.0 - yaw))
            draw_face(
                size,
                center=centre,
                axes=axes,
                brightness=brightness,
                tint=tint,
                seed=frame_seed,
            ).save(path, quality=JPEG_QUALITY)
    return face_dir, video_dir
